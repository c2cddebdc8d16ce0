"""What a session costs: token usage from the model's ``response.done`` events, priced by a table.

The realtime model reports usage once per response (``response.done``,
``response.usage``): input tokens (text and audio, of which some were
cached) and output tokens (text and audio). Input counts the whole
conversation the response read, not only the newest turn, which is how
OpenAI bills it.

The price table (``AGENT_PRICES``, JSON) maps a model name, or ``"*"`` for
any other, to one of two kinds of price::

    {"gpt-realtime": {"per_million_tokens": {"text_in": 4, "text_in_cached": 0.4, "text_out": 16,
                                             "audio_in": 32, "audio_in_cached": 0.4, "audio_out": 64}},
     "*": {"per_minute": {"audio_in": 0.06, "audio_out": 0.24}}}

Per minute prices audio only. Minutes are counted from tokens at OpenAI's
rates (user audio: 1 token per 100 ms, 600 a minute; assistant audio: 1 token
per 50 ms, 1200 a minute); the seed's $0.06 and $0.24 a minute are
$100 and $200 per million audio tokens at those rates. A cached price left
out is the uncached one. The default table is the seed's per-minute prices.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any

from .errors import ConfigError

AUDIO_IN_TOKENS_PER_MINUTE = 600  # 1 token per 100 ms of user audio
AUDIO_OUT_TOKENS_PER_MINUTE = 1200  # 1 token per 50 ms of assistant audio
DEFAULT_PRICES = '{"*": {"per_minute": {"audio_in": 0.06, "audio_out": 0.24}}}'
ANY_MODEL = "*"


@dataclass(frozen=True)
class Usage:
    """Tokens of one response, or summed over a session. ``*_in`` include their cached part."""

    text_in: int = 0
    text_in_cached: int = 0
    audio_in: int = 0
    audio_in_cached: int = 0
    text_out: int = 0
    audio_out: int = 0

    @classmethod
    def from_response(cls, usage: dict[str, Any] | None) -> Usage:
        """From ``response.usage`` of a ``response.done`` event (the wire JSON); None or {} is no usage."""
        if not usage:
            return cls()
        inp = usage.get("input_token_details") or {}
        out = usage.get("output_token_details") or {}
        text_in, audio_in = int(inp.get("text_tokens") or 0), int(inp.get("audio_tokens") or 0)
        details = inp.get("cached_tokens_details")
        if details:
            text_cached, audio_cached = int(details.get("text_tokens") or 0), int(details.get("audio_tokens") or 0)
        else:  # no split given: the cached prefix is the instructions and text first
            cached = int(inp.get("cached_tokens") or 0)
            text_cached = min(cached, text_in)
            audio_cached = min(cached - text_cached, audio_in)
        return cls(
            text_in=text_in, text_in_cached=text_cached, audio_in=audio_in, audio_in_cached=audio_cached,
            text_out=int(out.get("text_tokens") or 0), audio_out=int(out.get("audio_tokens") or 0),
        )  # fmt: skip

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def audio_minutes_in(self) -> float:
        return self.audio_in / AUDIO_IN_TOKENS_PER_MINUTE

    @property
    def audio_minutes_out(self) -> float:
        return self.audio_out / AUDIO_OUT_TOKENS_PER_MINUTE

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class PerMinute:
    """Dollars per minute of audio in and out (text is not priced)."""

    audio_in: float
    audio_out: float
    audio_in_cached: float | None = None

    def cost(self, u: Usage) -> float:
        cached = self.audio_in if self.audio_in_cached is None else self.audio_in_cached
        return (
            (u.audio_in - u.audio_in_cached) / AUDIO_IN_TOKENS_PER_MINUTE * self.audio_in
            + u.audio_in_cached / AUDIO_IN_TOKENS_PER_MINUTE * cached
            + u.audio_out / AUDIO_OUT_TOKENS_PER_MINUTE * self.audio_out
        )


@dataclass(frozen=True)
class PerMillionTokens:
    """Dollars per million tokens of text and audio, in and out, cached input apart."""

    text_in: float
    text_out: float
    audio_in: float
    audio_out: float
    text_in_cached: float | None = None
    audio_in_cached: float | None = None

    def cost(self, u: Usage) -> float:
        text_cached = self.text_in if self.text_in_cached is None else self.text_in_cached
        audio_cached = self.audio_in if self.audio_in_cached is None else self.audio_in_cached
        return (
            (u.text_in - u.text_in_cached) * self.text_in
            + u.text_in_cached * text_cached
            + (u.audio_in - u.audio_in_cached) * self.audio_in
            + u.audio_in_cached * audio_cached
            + u.text_out * self.text_out
            + u.audio_out * self.audio_out
        ) / 1e6


Price = PerMinute | PerMillionTokens
_KINDS: dict[str, type[PerMinute] | type[PerMillionTokens]] = {"per_minute": PerMinute, "per_million_tokens": PerMillionTokens}


@dataclass(frozen=True)
class PriceTable:
    prices: dict[str, Price]

    def price(self, model: str) -> Price:
        """The model's own price, else the ``"*"`` one; ConfigError if there is neither."""
        found = self.prices.get(model) or self.prices.get(ANY_MODEL)
        if found is None:
            raise ConfigError(
                f"AGENT_PRICES has no price for model {model!r}",
                hint=f'add an entry for it or a "*" entry; priced: {", ".join(sorted(self.prices))}',
            )
        return found

    def cost(self, model: str, usage: Usage) -> float:
        return self.price(model).cost(usage)


def parse_prices(raw: str | None) -> PriceTable:
    """Read ``AGENT_PRICES`` (None: the default table); any mistake is one ConfigError naming the spot."""
    text = DEFAULT_PRICES if raw is None else raw
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"AGENT_PRICES is not valid JSON: {e.msg} at character {e.pos}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError("AGENT_PRICES must be a JSON object of model name -> price", hint=f"e.g. {DEFAULT_PRICES}")
    prices: dict[str, Price] = {}
    for model, entry in data.items():
        where = f"AGENT_PRICES[{model!r}]"
        if not isinstance(entry, dict) or len(entry) != 1 or next(iter(entry)) not in _KINDS:
            raise ConfigError(f"{where} must be one of {{\"per_minute\": {{...}}}} or {{\"per_million_tokens\": {{...}}}}")
        kind_name, values = next(iter(entry.items()))
        prices[model] = _price(f"{where}.{kind_name}", _KINDS[kind_name], values)
    return PriceTable(prices)


def _price(where: str, kind: type[PerMinute] | type[PerMillionTokens], values: Any) -> Price:
    known = {f.name: f for f in fields(kind)}
    required = sorted(name for name, f in known.items() if "None" not in str(f.type))
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be an object with {', '.join(required)}")
    unknown = sorted(set(values) - set(known))
    missing = sorted(set(required) - set(values))
    if unknown or missing:
        raise ConfigError(
            f"{where}: " + "; ".join(
                ([f"unknown key(s) {', '.join(unknown)}"] if unknown else []) + ([f"missing {', '.join(missing)}"] if missing else [])
            ),
            hint=f"keys: {', '.join(known)}",
        )  # fmt: skip
    for name, value in values.items():
        # bool is an int in Python, and true is no price
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{where}.{name} must be a number of dollars, 0 or more (got {json.dumps(value)})")
    return kind(**{name: float(value) for name, value in values.items()})
