"""Settings: environment parsing, validation, and README documenting every variable."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from agent.config import OPENAI_BASE_URL, Settings
from agent.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.env_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_use_the_local_backend() -> None:
    s = Settings.from_env()
    assert not s.uses_openai
    assert s.backend_base_url == "http://127.0.0.1:8765/v1"


def test_openai_key_switches_to_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    s = Settings.from_env()
    assert s.uses_openai and s.backend_base_url == OPENAI_BASE_URL and s.backend_api_key == "sk-test"


def test_dotenv_is_read_but_never_overrides_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AGENT_VOICE=alloy\nAGENT_NAME=from-dotenv\n")
    monkeypatch.setenv("AGENT_NAME", "from-env")
    s = Settings.from_env()
    assert s.voice == "alloy" and s.agent_name == "from-env"


@pytest.mark.parametrize(
    ("name", "value"),
    [("AGENT_VAD_THRESHOLD", "2"), ("AGENT_HTTP_PORT", "eighty"), ("LIVEKIT_URL", "localhost:7880"),
     ("AGENT_LOG_LEVEL", "chatty"), ("AGENT_LOAD_THRESHOLD", "0"), ("AGENT_BARGE_IN_THRESHOLD", "1"),
     ("AGENT_BARGE_IN_MIN_SPEECH_MS", "-1"), ("AGENT_BARGE_IN_RESUME_S", "0"), ("AGENT_BARGE_IN", "maybe"),
     ("AGENT_SIP_RTP_PORTS", "10000"), ("AGENT_SIP_RTP_PORTS", "20000-10000"), ("AGENT_SIP_RTP_PORTS", "0-99999"),
     ("AGENT_SIP_PORT", "0"), ("AGENT_SIP", "perhaps")],
)  # fmt: skip
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        Settings.from_env()


def test_readme_documents_every_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", readme, re.MULTILINE))
    missing = set(Settings.env_names()) - documented
    assert not missing, f"README's configuration table lacks {sorted(missing)}"
    unknown = documented - set(Settings.env_names())
    assert not unknown, f"README documents variables the code does not read: {sorted(unknown)}"


def test_realtime_package_never_imports_livekit() -> None:
    """The local server speaks only the OpenAI protocol (shared/DESIGN.md)."""
    for path in (ROOT / "agent" / "realtime").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])  # fmt: skip
            assert not any(n.split(".")[0] == "livekit" for n in names), f"{path.name} imports {names}"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "pocketsphinx"),  # the local backend transcribes offline
        ({"OPENAI_API_KEY": "sk-test"}, "not given"),  # OpenAI: the plugin's default model
        ({"AGENT_INPUT_TRANSCRIPTION": "off"}, None),
        ({"OPENAI_API_KEY": "sk-test", "AGENT_INPUT_TRANSCRIPTION": "off"}, None),
        ({"OPENAI_API_KEY": "sk-test", "AGENT_INPUT_TRANSCRIPTION": "gpt-4o-transcribe"}, "gpt-4o-transcribe"),
    ],
)
def test_input_transcription_follows_the_backend_unless_set(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str | None
) -> None:
    from livekit.agents.types import NotGiven

    from agent.session import build_model, input_transcription

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    chosen = input_transcription(settings)
    got = "not given" if isinstance(chosen, NotGiven) else (chosen.model if chosen is not None else None)
    assert got == expected
    # And the model is built with it: no transcription asked for when "off".
    model = build_model(settings)
    assert model.capabilities.user_transcription == (expected is not None)
