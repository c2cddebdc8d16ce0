"""The local realtime server's journal: what each session did, as JSON lines.

With ``AGENT_LOCAL_REALTIME_JOURNAL=PATH`` the server appends one line per
event a test may want to assert on, whatever agent is its client:

    {"t": 1796618378.29, "session": "sess_…", "kind": "session_opened"}
    {"kind": "transcript", "item_id": …, "text": "what time do you open"}
    {"kind": "function_call", "call_id": …, "name": "place_order", "arguments": "{…}"}
    {"kind": "function_call_output", "call_id": …, "output": "order number 7 is placed"}
    {"kind": "response_done", "response_id": …, "status": "completed"}
    {"kind": "session_closed"}

``t`` is wall-clock time (seconds), so a test can take what happened after a
moment. :class:`JournalReader` reads it back (agent.testing uses it for
``expect(...).to_call_tool``). Lines are written whole with one ``write`` on a
file opened for appending, so readers never see half a line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel


class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    def write(self, session: str, kind: str, **fields: Any) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8", buffering=1)
        line = json.dumps({"t": round(time.time(), 3), "session": session, "kind": kind, **fields}, default=str)
        self._file.write(line + "\n")

    def server_event(self, session: str, event: BaseModel) -> None:
        """Note a server event if it is one the journal keeps."""
        kind = getattr(event, "type", "")
        if kind == "response.output_item.done":
            item = getattr(event, "item", None)
            if getattr(item, "type", None) == "function_call":
                self.write(session, "function_call", call_id=item.call_id, name=item.name, arguments=item.arguments)  # type: ignore[union-attr]
        elif kind == "conversation.item.input_audio_transcription.completed":
            self.write(session, "transcript", item_id=event.item_id, text=event.transcript)  # type: ignore[attr-defined]
        elif kind == "response.done":
            response = event.response  # type: ignore[attr-defined]
            self.write(session, "response_done", response_id=response.id, status=response.status)

    def client_event(self, session: str, event: BaseModel) -> None:
        """Note a client event if it is one the journal keeps (a tool's output)."""
        if getattr(event, "type", "") != "conversation.item.create":
            return
        item = event.item  # type: ignore[attr-defined]
        if getattr(item, "type", None) == "function_call_output":
            self.write(session, "function_call_output", call_id=item.call_id, output=item.output)
        elif getattr(item, "type", None) == "message" and getattr(item, "role", None) == "user":
            texts = [getattr(c, "text", None) for c in (item.content or [])]
            self.write(session, "user_text", text=" ".join(t for t in texts if t))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass(frozen=True)
class ToolCall:
    """A function call the backend sent, with the output the agent gave it (None: not yet, or never)."""

    t: float
    session: str
    call_id: str
    name: str
    arguments: dict[str, Any] | str  # the JSON object, or the raw text when it was not JSON
    output: str | None


class JournalReader:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def entries(self, since: float = 0.0) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # a line being written
                entry: dict[str, Any] = json.loads(line)
                if entry["t"] >= since:
                    yield entry

    def tool_calls(self, since: float = 0.0) -> list[ToolCall]:
        entries = list(self.entries(since))
        outputs = {e["call_id"]: e["output"] for e in entries if e["kind"] == "function_call_output"}
        calls = []
        for e in entries:
            if e["kind"] != "function_call":
                continue
            try:
                arguments: dict[str, Any] | str = json.loads(e["arguments"] or "{}")
            except json.JSONDecodeError:
                arguments = e["arguments"]
            calls.append(ToolCall(e["t"], e["session"], e["call_id"], e["name"], arguments, outputs.get(e["call_id"])))
        return calls

    def transcripts(self, since: float = 0.0) -> list[str]:
        """What the backend heard the caller say (its own transcription), in order."""
        return [e["text"] for e in self.entries(since) if e["kind"] == "transcript"]
