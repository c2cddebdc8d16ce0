"""The conversation: its items, their order, and the audio behind them.

Pure bookkeeping for the protocol: insert after an item (or at the
root), delete, truncate an assistant message's audio, and the plain view
of it all that a brain reads (``turns()``). Lookups of unknown items are
the caller's to report, with the per-event code OpenAI uses.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
from openai.types import realtime as rt

from . import audio as audio_codec
from .brain import Turn
from .errors import Case, ProtocolError

Item: TypeAlias = (
    rt.RealtimeConversationItemUserMessage
    | rt.RealtimeConversationItemAssistantMessage
    | rt.RealtimeConversationItemSystemMessage
    | rt.RealtimeConversationItemFunctionCall
    | rt.RealtimeConversationItemFunctionCallOutput
)


class Conversation:
    """Items by id, in order, with the length of the audio each one holds."""

    def __init__(self) -> None:
        self._items: dict[str, Item] = {}
        self._order: list[str] = []
        self._audio_ms: dict[str, int] = {}  # user audio (or audio in a created item)
        self._assistant_audio: dict[str, np.ndarray] = {}  # what was sent of each reply

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def get(self, item_id: str) -> Item | None:
        return self._items.get(item_id)

    def require(self, item_id: str, missing: Case) -> Item:
        item = self._items.get(item_id)
        if item is None:
            raise ProtocolError(missing, item_id=item_id)
        return item

    @property
    def last_id(self) -> str | None:
        return self._order[-1] if self._order else None

    def items(self) -> list[tuple[str, Item]]:
        return [(item_id, self._items[item_id]) for item_id in self._order]

    def insert(self, item: Item, previous_item_id: str | None, *, audio_ms: int = 0) -> None:
        """After ``previous_item_id`` ("root": first; None: last)."""
        item_id = str(item.id)
        self._items[item_id] = item
        if previous_item_id is None:
            self._order.append(item_id)
        elif previous_item_id == "root":
            self._order.insert(0, item_id)
        else:
            self._order.insert(self._order.index(previous_item_id) + 1, item_id)
        self._audio_ms[item_id] = audio_ms

    def replace(self, item: Item) -> None:
        self._items[str(item.id)] = item

    def delete(self, item_id: str) -> None:
        self.require(item_id, Case.DELETE_UNKNOWN_ITEM)
        del self._items[item_id]
        self._order.remove(item_id)
        self._audio_ms.pop(item_id, None)
        self._assistant_audio.pop(item_id, None)

    def previous_of(self, item_id: str | None) -> str | None:
        if item_id not in self._order:
            return None
        idx = self._order.index(item_id)
        return self._order[idx - 1] if idx > 0 else None

    def audio_ms(self, item_id: str) -> int:
        return self._audio_ms.get(item_id, 0)

    def assistant_audio_ms(self, item_id: str) -> float:
        pcm = self._assistant_audio.get(item_id)
        return 0.0 if pcm is None else pcm.size * 1000 / audio_codec.SAMPLE_RATE

    def has_assistant_audio(self, item_id: str) -> bool:
        return item_id in self._assistant_audio

    def set_assistant_audio(self, item_id: str, pcm: np.ndarray) -> None:
        self._assistant_audio[item_id] = pcm

    def set_transcript(self, item_id: str, transcript: str) -> bool:
        """The transcript of a user audio item; False if the item is gone."""
        item = self._items.get(item_id)
        if not isinstance(item, rt.RealtimeConversationItemUserMessage):
            return False
        content = [
            part.model_copy(update={"transcript": transcript}) if part.type == "input_audio" else part
            for part in item.content
        ]
        self._items[item_id] = item.model_copy(update={"content": content})
        return True

    def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """Cut an assistant message's audio (and its transcript, word-proportionally)."""
        item = self.require(item_id, Case.TRUNCATE_UNKNOWN_ITEM)
        if not isinstance(item, rt.RealtimeConversationItemAssistantMessage):
            raise ProtocolError(Case.TRUNCATE_NOT_MODEL_AUDIO)
        if audio_end_ms < 0:
            raise ProtocolError(Case.BELOW_MINIMUM, param="audio_end_ms", minimum=0, value=audio_end_ms)
        pcm = self._assistant_audio.get(item_id, np.zeros(0, dtype=np.int16))
        duration_ms = int(pcm.size * 1000 / audio_codec.SAMPLE_RATE)
        if audio_end_ms > duration_ms:
            # Zero is always allowed: a reply interrupted before any audio played
            # (a known client pain when refused; see DESIGN.md).
            raise ProtocolError(Case.TRUNCATE_PAST_END, duration_ms=duration_ms, audio_end_ms=audio_end_ms)
        self._assistant_audio[item_id] = pcm[: int(audio_end_ms * audio_codec.SAMPLE_RATE / 1000)]
        content = list(item.content)
        if content and duration_ms:
            part = content[0]
            words = (part.transcript or "").split()
            kept = words[: round(len(words) * audio_end_ms / duration_ms)]
            content[0] = part.model_copy(update={"transcript": " ".join(kept)})
            self._items[item_id] = item.model_copy(update={"content": content})

    def turns(self) -> tuple[Turn, ...]:
        """The conversation as a brain sees it."""
        turns: list[Turn] = []
        for item_id, item in self.items():
            if isinstance(item, rt.RealtimeConversationItemFunctionCall):
                turns.append(Turn(kind="function_call", role="assistant", name=item.name, arguments=item.arguments, call_id=item.call_id))
            elif isinstance(item, rt.RealtimeConversationItemFunctionCallOutput):
                turns.append(Turn(kind="function_call_output", role="tool", call_id=item.call_id, output=item.output))
            else:
                texts = [t for part in item.content if (t := _part_text(part))]
                turns.append(
                    Turn(
                        kind="message",
                        role=item.role,
                        text=" ".join(texts) or None,
                        audio_ms=self.audio_ms(item_id),
                        complete=item.status != "incomplete",
                    )
                )
        return tuple(turns)


def _part_text(part: object) -> str | None:
    return getattr(part, "text", None) or getattr(part, "transcript", None)
