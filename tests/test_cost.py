"""Cost: usage read from ``response.done`` usage, priced by the table; figures worked by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cost import PerMillionTokens, PerMinute, Usage, parse_prices
from agent.errors import ConfigError

# A response.done usage as OpenAI's GA API sends it (and agent/realtime/usage.py makes it).
RESPONSE_USAGE = {
    "total_tokens": 8500,
    "input_tokens": 6000,
    "output_tokens": 2300,
    "input_token_details": {
        "text_tokens": 1000,
        "audio_tokens": 5000,
        "image_tokens": 0,
        "cached_tokens": 1200,
        "cached_tokens_details": {"text_tokens": 200, "audio_tokens": 1000, "image_tokens": 0},
    },
    "output_token_details": {"text_tokens": 300, "audio_tokens": 2000},
}


def test_usage_is_read_from_response_done_usage() -> None:
    u = Usage.from_response(RESPONSE_USAGE)
    assert u == Usage(text_in=1000, text_in_cached=200, audio_in=5000, audio_in_cached=1000, text_out=300, audio_out=2000)


def test_no_usage_is_zero_usage() -> None:
    assert Usage.from_response(None) == Usage() == Usage.from_response({})


def test_cached_tokens_without_a_split_go_to_text_first() -> None:
    u = Usage.from_response({"input_token_details": {"text_tokens": 100, "audio_tokens": 500, "cached_tokens": 150}})
    assert (u.text_in_cached, u.audio_in_cached) == (100, 50)


def test_usages_add_up() -> None:
    a = Usage(text_in=1, audio_in=10, audio_out=20)
    b = Usage(text_in=2, audio_in_cached=3, audio_in=30, text_out=4)
    assert a + b == Usage(text_in=3, text_in_cached=0, audio_in=40, audio_in_cached=3, text_out=4, audio_out=20)


def test_audio_minutes_come_from_tokens_at_openai_rates() -> None:
    u = Usage(audio_in=900, audio_out=600)  # 90 s of user audio, 30 s of assistant audio
    assert u.audio_minutes_in == pytest.approx(1.5)
    assert u.audio_minutes_out == pytest.approx(0.5)


def test_default_table_is_the_seed_per_minute_prices() -> None:
    table = parse_prices(None)
    assert table.price("gpt-realtime") == PerMinute(audio_in=0.06, audio_out=0.24)
    # one minute in (600 tokens) and one out (1200 tokens): 0.06 + 0.24
    assert table.cost("any-model", Usage(audio_in=600, audio_out=1200)) == pytest.approx(0.30)
    # 123 tokens in = 12.3 s, 57 out = 2.85 s: 0.0123 + 0.0114
    assert table.cost("gpt-realtime", Usage(text_in=50, audio_in=123, audio_out=57, text_out=9)) == pytest.approx(0.0237)


def test_per_minute_prices_cached_audio_apart() -> None:
    price = PerMinute(audio_in=0.06, audio_out=0.24, audio_in_cached=0.01)
    # 600 uncached tokens (1 min at 0.06) + 600 cached (1 min at 0.01) + 600 out (0.5 min at 0.24)
    assert price.cost(Usage(audio_in=1200, audio_in_cached=600, audio_out=600)) == pytest.approx(0.06 + 0.01 + 0.12)


def test_per_million_tokens_prices_text_and_audio_with_cached_input_apart() -> None:
    table = parse_prices(
        '{"gpt-realtime": {"per_million_tokens": {"text_in": 4, "text_in_cached": 0.4, "text_out": 16,'
        ' "audio_in": 32, "audio_in_cached": 0.4, "audio_out": 64}}}'
    )
    # (800*4 + 200*0.4 + 4000*32 + 1000*0.4 + 300*16 + 2000*64) / 1e6
    #  = (3200 + 80 + 128000 + 400 + 4800 + 128000) / 1e6
    assert table.cost("gpt-realtime", Usage.from_response(RESPONSE_USAGE)) == pytest.approx(0.26448)


def test_a_cached_price_left_out_is_the_uncached_price() -> None:
    price = PerMillionTokens(text_in=4, text_out=16, audio_in=32, audio_out=64)
    assert price.cost(Usage(text_in=1_000_000, text_in_cached=500_000, audio_in=1_000_000, audio_in_cached=1_000_000)) == pytest.approx(36.0)


def test_a_model_is_priced_by_its_own_entry_before_the_wildcard() -> None:
    table = parse_prices('{"mini": {"per_minute": {"audio_in": 0.01, "audio_out": 0.02}}, "*": {"per_minute": {"audio_in": 1, "audio_out": 1}}}')
    assert table.cost("mini", Usage(audio_in=600, audio_out=1200)) == pytest.approx(0.03)
    assert table.cost("other", Usage(audio_in=600, audio_out=1200)) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object of model name"),
        ("{}", "JSON object of model name"),
        ('{"*": {"per_hour": {"audio_in": 1}}}', "must be one of"),
        ('{"*": {"per_minute": {"audio_in": 0.06, "audio_out": 0.24}, "per_million_tokens": {}}}', "must be one of"),
        ('{"*": {"per_minute": {"audio_in": 0.06}}}', "missing audio_out"),
        ('{"*": {"per_minute": {"audio_in": 0.06, "audio_out": 0.24, "audio_inn": 1}}}', "unknown key(s) audio_inn"),
        ('{"*": {"per_minute": {"audio_in": "0.06", "audio_out": 0.24}}}', 'audio_in must be a number of dollars, 0 or more (got "0.06")'),
        ('{"*": {"per_minute": {"audio_in": -1, "audio_out": 0.24}}}', "0 or more (got -1)"),
        ('{"*": {"per_minute": {"audio_in": true, "audio_out": 0.24}}}', "(got true)"),
        ('{"*": {"per_minute": [0.06, 0.24]}}', "must be an object with audio_in, audio_out"),
    ],
)
def test_a_malformed_price_table_is_one_config_error(raw: str, says: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_prices(raw)
    assert says in str(e.value)


def test_a_model_the_table_does_not_price_is_a_config_error() -> None:
    table = parse_prices('{"mini": {"per_minute": {"audio_in": 0.01, "audio_out": 0.02}}}')
    with pytest.raises(ConfigError, match="no price for model 'gpt-realtime'"):
        table.price("gpt-realtime")


def test_settings_check_the_table_prices_the_configured_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from agent.config import Settings

    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("AGENT_REALTIME_MODEL", "gpt-realtime")
    monkeypatch.setenv("AGENT_PRICES", '{"gpt-realtime-mini": {"per_minute": {"audio_in": 0.01, "audio_out": 0.02}}}')
    with pytest.raises(ConfigError, match="no price for model 'gpt-realtime'"):
        Settings.from_env()
    monkeypatch.setenv("AGENT_REALTIME_MODEL", "gpt-realtime-mini")
    assert Settings.from_env().price_table.cost("gpt-realtime-mini", Usage(audio_in=600)) == pytest.approx(0.01)
