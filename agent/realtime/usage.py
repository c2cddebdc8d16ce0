"""Token usage and rate limits, as OpenAI reports them on each response.

Counted, not measured: text is about 4 characters a token, user audio 1
token per 100 ms, assistant audio 1 token per 50 ms. ``rate_limits.updated``
arrives at the start of each response (GA behaviour).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .conversation import Conversation, _part_text

REQUESTS_PER_MINUTE = 5000
TOKENS_PER_MINUTE = 40000


def text_tokens(text: str | None) -> int:
    return math.ceil(len(text) / 4) if text else 0


def audio_out_tokens(audio_ms: float) -> int:
    return math.ceil(audio_ms / 50)


@dataclass(frozen=True)
class InputUsage:
    text: int
    audio: int

    @property
    def total(self) -> int:
        return self.text + self.audio


def input_usage(conversation: Conversation, instructions: str | None) -> InputUsage:
    """What a response reads: the instructions and the whole conversation."""
    text = text_tokens(instructions)
    audio = 0
    for item_id, item in conversation.items():
        role = getattr(item, "role", None)
        if role == "user":
            audio += math.ceil(conversation.audio_ms(item_id) / 100)
        elif role == "assistant" and conversation.has_assistant_audio(item_id):
            audio += math.ceil(conversation.assistant_audio_ms(item_id) / 50)
        for part in getattr(item, "content", None) or []:
            text += text_tokens(_part_text(part))
        text += text_tokens(getattr(item, "arguments", None)) + text_tokens(getattr(item, "output", None))
    return InputUsage(text, audio)


def rate_limits(inp: InputUsage) -> list[dict[str, Any]]:
    return [
        {"name": "requests", "limit": REQUESTS_PER_MINUTE, "remaining": REQUESTS_PER_MINUTE - 1, "reset_seconds": 0.012},
        {"name": "tokens", "limit": TOKENS_PER_MINUTE, "remaining": TOKENS_PER_MINUTE - inp.total, "reset_seconds": 0.3},
    ]


def response_usage(inp: InputUsage, out_text: int, out_audio: int) -> dict[str, Any]:
    return {
        "total_tokens": inp.total + out_text + out_audio,
        "input_tokens": inp.total,
        "output_tokens": out_text + out_audio,
        "input_token_details": {
            "text_tokens": inp.text,
            "audio_tokens": inp.audio,
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
    }
