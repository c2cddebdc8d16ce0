"""The persisted transcript: every conversation item of a room, in SQLite.

A job whose process dies takes the session's memory with it. Each item is
written as it happens (user and agent messages, function calls and their
outputs), so the agent that the re-dispatcher brings to the room can start
from the same conversation: the items become the new session's chat context,
which livekit-agents sends to the realtime model.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from livekit.agents import llm

from .db import connect, prepare

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transcript (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,      -- message | function_call | function_call_output
    data TEXT NOT NULL,      -- JSON of the item's fields
    created_at REAL NOT NULL,
    PRIMARY KEY (room, seq)
);
"""


class TranscriptStore:
    def __init__(self, path: str | Path, *, keep_s: float = 6 * 3600) -> None:
        self.path = prepare(path, _SCHEMA)
        self.keep_s = keep_s  # an older conversation in the same room is not resumed

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path)

    def append(self, room: str, kind: str, data: dict[str, Any]) -> None:
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT INTO transcript (room, seq, kind, data, created_at) "
                "VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM transcript WHERE room = ?), ?, ?, ?)",
                (room, room, kind, json.dumps(data), time.time()),
            )

    def items(self, room: str, *, since: float | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The room's items of the last ``keep_s`` seconds, or those written at ``since`` or later."""
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT kind, data FROM transcript WHERE room = ? AND created_at >= ? ORDER BY seq",
                (room, time.time() - self.keep_s if since is None else since),
            ).fetchall()
        return [(kind, json.loads(data)) for kind, data in rows]

    # ------------------------------------------------------------------ livekit-agents items

    def record_end(self, room: str, reason: str) -> None:
        """The conversation ended normally (the caller left, the call was ended): do not resume it."""
        self.append(room, "end", {"reason": reason})

    def record_message(self, room: str, item: llm.ChatMessage) -> None:
        text = item.text_content
        if item.role in ("user", "assistant") and text:
            self.append(room, "message", {"role": item.role, "text": text, "interrupted": item.interrupted})

    def record_tool_calls(self, room: str, calls: list[llm.FunctionCall], outputs: list[llm.FunctionCallOutput]) -> None:
        for call, output in zip(calls, outputs, strict=False):
            self.append(room, "function_call", {"call_id": call.call_id, "name": call.name, "arguments": call.arguments})
            self.append(room, "function_call_output",
                        {"call_id": output.call_id, "name": output.name, "output": output.output, "is_error": output.is_error})  # fmt: skip

    def chat_context(self, room: str) -> llm.ChatContext | None:
        """The room's conversation so far as a chat context, or None if there is none."""
        items = self.items(room)
        ends = [i for i, (kind, _) in enumerate(items) if kind == "end"]
        items = items[ends[-1] + 1 :] if ends else items  # only the conversation after the last normal end
        if not items:
            return None  # nothing said, or the last conversation ended normally
        ctx = llm.ChatContext.empty()
        for kind, data in items:
            if kind == "message":
                ctx.add_message(role=data["role"], content=data["text"], interrupted=bool(data.get("interrupted")))
            elif kind == "function_call":
                ctx.items.append(llm.FunctionCall(call_id=data["call_id"], name=data["name"], arguments=data["arguments"]))
            elif kind == "function_call_output":
                ctx.items.append(
                    llm.FunctionCallOutput(call_id=data["call_id"], name=data.get("name", ""), output=data["output"],
                                           is_error=bool(data.get("is_error")))  # fmt: skip
                )
        return ctx
