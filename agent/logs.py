"""Log lines: plain text by default, JSON lines with ``AGENT_LOG_FORMAT=json``.

The worker in ``start`` mode already prints JSON lines: livekit-agents
installs its own ``JsonFormatter`` (``livekit.agents.cli.log``) on the root
logger, and the records of job processes reach it through the framework's
log pipe with ``job_id`` and ``room`` set. ``AGENT_LOG_FORMAT=json`` makes
everything else speak the same lines: our own commands (``realtime-server``,
``web``, ``dispatch``, the worker's preflight) and the worker in ``dev``
mode, which the framework would colour. :class:`JsonLines` writes the keys
the framework's formatter writes (``level``, ``name``, ``message``, ``pid``,
``timestamp``, then every extra field of the record), so one log pipeline
reads both.

Room, job and participant: the job entry sets them as the job's log context
fields (livekit-agents' ``JobContext.log_context_fields``, which its filter
copies onto every record of the job process, so they travel the log pipe to
the worker's handler), and the session adds ``participant`` once it is
linked to a caller.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

from .errors import ConfigError

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The attributes every LogRecord has: anything else on a record is an extra field.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def log_format(raw: str | None) -> str:
    """The format named by ``AGENT_LOG_FORMAT`` (unset: ``text``), else :class:`ConfigError`."""
    value = (raw or "text").strip().lower()
    if value not in LOG_FORMATS:
        raise ConfigError(f"AGENT_LOG_FORMAT={raw!r} must be one of {', '.join(LOG_FORMATS)}")
    return value


class JsonLines(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"level": record.levelname, "name": record.name, "message": record.getMessage()}
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        line.setdefault("pid", record.process)
        line["timestamp"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat()
        # default=str: an extra field that is not JSON (an exception, a path) is
        # written as its text rather than losing the whole line.
        return json.dumps(line, default=_as_text, ensure_ascii=False)


def _as_text(value: object) -> str:
    if isinstance(value, BaseException):
        return "".join(traceback.format_exception_only(value)).strip()
    return str(value)


def readable(line: str) -> str:
    """A JSON log line as the text format would print it (time, level, logger,
    message, the job's room, the exception's last line); other lines as they are.
    For failure reports, where a page of JSON hides what happened."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or "message" not in record:
        return line
    stamp = str(record.get("timestamp", ""))[11:23]
    text = f"{stamp} {record.get('level', '')} {record.get('name', '')}: {record['message']}"
    if record.get("room") and str(record["room"]) not in text:
        text += f" [room {record['room']}]"
    if record.get("exc_info"):
        text += f" | {str(record['exc_info']).strip().splitlines()[-1]}"
    return text


def formatter(fmt: str) -> logging.Formatter:
    return JsonLines() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def setup_logging(level: str, fmt: str) -> None:
    """Root logging for our own commands: one stderr handler in ``fmt``."""
    name = level.upper()
    name = "WARNING" if name == "WARN" else name
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    logging.basicConfig(level=getattr(logging, name, logging.INFO), handlers=[handler])


def use_json_lines(logger: logging.Logger | None = None) -> None:
    """Give JSON lines to every handler of ``logger`` (root by default) that
    does not already write them, as the worker does in ``dev`` mode."""
    from livekit.agents.cli.log import JsonFormatter

    for handler in (logger or logging.getLogger()).handlers:
        if not isinstance(handler.formatter, JsonFormatter | JsonLines):
            handler.setFormatter(JsonLines())
