"""Settings: one object, read from the environment and ``.env``.

Every field here is documented in README.md ("Configuration"); a test
checks that the two lists agree. Values come from the process environment
first, then from a ``.env`` file in the working directory (python-dotenv
never overrides variables that are already set).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dotenv import load_dotenv

from .cost import PriceTable, parse_prices
from .errors import ConfigError
from .logs import log_format

if TYPE_CHECKING:
    from .token_endpoint import TokenPolicy

OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_LOCAL_HOST = "127.0.0.1"
DEFAULT_LOCAL_PORT = 8765

DEFAULT_INSTRUCTIONS = (
    "You are a friendly voice assistant for a small coffee shop. You are an AI, "
    "not a person: say so when you greet the caller and whenever you are asked. "
    "Keep answers short and spoken, one or two sentences."
)
# The greeting is quoted inside the response instructions ("Say exactly: ...")
# so that OpenAI's model and the local scripted brain say the same words.
DEFAULT_GREETING = "Hello! I'm an AI assistant. How can I help you today?"
DEFAULT_RECONNECT_NOTICE = "One moment, please. I am reconnecting."


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _parse(name: str, raw: str | None, conv: Callable[[str], Any], default: Any) -> Any:
    if raw is None:
        return default
    try:
        return conv(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {conv.__name__}") from None


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


_bool.__name__ = "boolean (1/0, true/false, yes/no, on/off)"


@dataclass(frozen=True)
class Settings:
    """All settings of the worker, the local backend and the dev stack."""

    # LiveKit
    livekit_url: str = field(default="ws://127.0.0.1:7880", metadata={"env": "LIVEKIT_URL"})
    livekit_api_key: str | None = field(default=None, metadata={"env": "LIVEKIT_API_KEY"})
    livekit_api_secret: str | None = field(default=None, metadata={"env": "LIVEKIT_API_SECRET"})
    livekit_config: str = field(default="livekit.yaml", metadata={"env": "AGENT_LIVEKIT_CONFIG"})
    livekit_server_bin: str | None = field(default=None, metadata={"env": "LIVEKIT_SERVER_BIN"})
    livekit_sip_bin: str | None = field(default=None, metadata={"env": "LIVEKIT_SIP_BIN"})
    # Realtime backend
    openai_api_key: str | None = field(default=None, metadata={"env": "OPENAI_API_KEY"})
    realtime_base_url: str | None = field(default=None, metadata={"env": "AGENT_REALTIME_BASE_URL"})
    realtime_model: str = field(default="gpt-realtime", metadata={"env": "AGENT_REALTIME_MODEL"})
    voice: str = field(default="marin", metadata={"env": "AGENT_VOICE"})
    instructions: str = field(default=DEFAULT_INSTRUCTIONS, metadata={"env": "AGENT_INSTRUCTIONS"})
    greeting: str = field(default=DEFAULT_GREETING, metadata={"env": "AGENT_GREETING"})
    realtime_max_session_s: float | None = field(default=None, metadata={"env": "AGENT_REALTIME_MAX_SESSION_S"})
    realtime_heartbeat_s: float = field(default=5.0, metadata={"env": "AGENT_REALTIME_HEARTBEAT_S"})
    realtime_connect_timeout_s: float = field(default=5.0, metadata={"env": "AGENT_REALTIME_CONNECT_TIMEOUT_S"})
    realtime_max_retries: int = field(default=6, metadata={"env": "AGENT_REALTIME_MAX_RETRIES"})
    # A job that has not joined its room by then ends (a room deleted while the
    # agent joined it left the SDK's join waiting with no end: seen, a refused call).
    join_timeout_s: float = field(default=20.0, metadata={"env": "AGENT_JOIN_TIMEOUT_S"})
    reconnect_notice: str = field(default=DEFAULT_RECONNECT_NOTICE, metadata={"env": "AGENT_RECONNECT_NOTICE"})
    reconnect_notice_after_s: float = field(default=1.0, metadata={"env": "AGENT_RECONNECT_NOTICE_AFTER_S"})
    vad_threshold: float = field(default=0.5, metadata={"env": "AGENT_VAD_THRESHOLD"})
    silence_duration_ms: int = field(default=500, metadata={"env": "AGENT_SILENCE_DURATION_MS"})
    # The model that transcribes the caller's audio: "" for the backend's default
    # (OpenAI: the plugin's; local: pocketsphinx), "off" for none (agent/session.py).
    input_transcription: str = field(default="", metadata={"env": "AGENT_INPUT_TRANSCRIPTION"})
    # Local realtime server
    local_realtime_host: str = field(default=DEFAULT_LOCAL_HOST, metadata={"env": "AGENT_LOCAL_REALTIME_HOST"})
    local_realtime_port: int = field(default=DEFAULT_LOCAL_PORT, metadata={"env": "AGENT_LOCAL_REALTIME_PORT"})
    local_realtime_key: str | None = field(default=None, metadata={"env": "AGENT_LOCAL_REALTIME_KEY"})
    local_realtime_max_session_s: float = field(default=3600.0, metadata={"env": "AGENT_LOCAL_REALTIME_MAX_SESSION_S"})
    local_realtime_max_sessions: int = field(default=500, metadata={"env": "AGENT_LOCAL_REALTIME_MAX_SESSIONS"})
    brain_script: str | None = field(default=None, metadata={"env": "AGENT_BRAIN_SCRIPT"})
    local_realtime_journal: str | None = field(default=None, metadata={"env": "AGENT_LOCAL_REALTIME_JOURNAL"})
    # Worker
    agent_name: str = field(default="", metadata={"env": "AGENT_NAME"})
    num_idle_processes: int = field(default=2, metadata={"env": "AGENT_NUM_IDLE_PROCESSES"})
    prewarm: bool = field(default=True, metadata={"env": "AGENT_PREWARM"})  # agent/prewarm.py
    load_threshold: float = field(default=0.7, metadata={"env": "AGENT_LOAD_THRESHOLD"})
    max_jobs: int = field(default=0, metadata={"env": "AGENT_MAX_JOBS"})
    load_from_cpu: bool = field(default=True, metadata={"env": "AGENT_LOAD_FROM_CPU"})
    http_port: int = field(default=8081, metadata={"env": "AGENT_HTTP_PORT"})
    drain_timeout: int = field(default=30, metadata={"env": "AGENT_DRAIN_TIMEOUT"})
    redispatch: bool = field(default=True, metadata={"env": "AGENT_REDISPATCH"})
    redispatch_grace_s: float = field(default=3.0, metadata={"env": "AGENT_REDISPATCH_GRACE_S"})
    preflight_timeout: float = field(default=10.0, metadata={"env": "AGENT_PREFLIGHT_TIMEOUT"})
    log_format: str = field(default="text", metadata={"env": "AGENT_LOG_FORMAT"})
    log_level: str = field(default="INFO", metadata={"env": "AGENT_LOG_LEVEL"})
    # Metrics, cost, session records
    metrics_port: int = field(default=0, metadata={"env": "AGENT_METRICS_PORT"})
    metrics_host: str = field(default="0.0.0.0", metadata={"env": "AGENT_METRICS_HOST"})
    prices: str | None = field(default=None, metadata={"env": "AGENT_PRICES"})
    records_url: str | None = field(default=None, metadata={"env": "AGENT_RECORDS_URL"})
    # Audio front-end (LiveKit's WebRTC APM on the caller's audio)
    echo_cancellation: bool = field(default=True, metadata={"env": "AGENT_ECHO_CANCELLATION"})
    noise_suppression: bool = field(default=True, metadata={"env": "AGENT_NOISE_SUPPRESSION"})
    high_pass_filter: bool = field(default=True, metadata={"env": "AGENT_HIGH_PASS_FILTER"})
    auto_gain_control: bool = field(default=False, metadata={"env": "AGENT_AUTO_GAIN_CONTROL"})
    frontend_trace_dir: str | None = field(default=None, metadata={"env": "AGENT_FRONTEND_TRACE_DIR"})
    # Barge-in in the worker (agent/audio/bargein.py): Silero VAD after the front-end
    barge_in: bool = field(default=False, metadata={"env": "AGENT_BARGE_IN"})
    barge_in_threshold: float = field(default=0.5, metadata={"env": "AGENT_BARGE_IN_THRESHOLD"})
    barge_in_min_speech_ms: int = field(default=64, metadata={"env": "AGENT_BARGE_IN_MIN_SPEECH_MS"})
    barge_in_resume_s: float = field(default=0.6, metadata={"env": "AGENT_BARGE_IN_RESUME_S"})
    # Tools
    tools: str = field(default="all", metadata={"env": "AGENT_TOOLS"})
    tools_file: str | None = field(default=None, metadata={"env": "AGENT_TOOLS_FILE"})
    db_path: str = field(default="var/agent.db", metadata={"env": "AGENT_DB_PATH"})
    escalation_webhook: str | None = field(default=None, metadata={"env": "AGENT_ESCALATION_WEBHOOK"})
    # Phone callers (agent.phone): where escalate_to_human transfers a call
    # (a number or a SIP URI; unset: no transfer), and the keypad's pause.
    transfer_to: str | None = field(default=None, metadata={"env": "AGENT_TRANSFER_TO"})
    dtmf_pause_s: float = field(default=1.5, metadata={"env": "AGENT_DTMF_PAUSE_S"})
    # LiveKit SIP in `up` (AGENT_SIP=1): where livekit-sip listens and what it announces
    sip: bool = field(default=False, metadata={"env": "AGENT_SIP"})
    sip_address: str = field(default="127.0.0.1", metadata={"env": "AGENT_SIP_ADDRESS"})
    sip_port: int = field(default=5060, metadata={"env": "AGENT_SIP_PORT"})
    sip_rtp_ports: str = field(default="10000-10100", metadata={"env": "AGENT_SIP_RTP_PORTS"})
    # Local stack
    cache_dir: str | None = field(default=None, metadata={"env": "AGENT_CACHE_DIR"})
    web_host: str = field(default="127.0.0.1", metadata={"env": "AGENT_WEB_HOST"})
    web_port: int = field(default=8080, metadata={"env": "AGENT_WEB_PORT"})
    # The token endpoint (agent/token_endpoint.py): what callers may choose, who may ask
    token_fields: str = field(default="room_name,participant_name,room_config", metadata={"env": "AGENT_TOKEN_FIELDS"})
    token_cors_origins: str = field(default="", metadata={"env": "AGENT_TOKEN_CORS_ORIGINS"})
    token_ttl_s: int = field(default=900, metadata={"env": "AGENT_TOKEN_TTL_S"})
    token_secret: str | None = field(default=None, metadata={"env": "AGENT_TOKEN_SECRET"})
    token_server_url: str | None = field(default=None, metadata={"env": "AGENT_TOKEN_SERVER_URL"})

    @property
    def uses_openai(self) -> bool:
        """True when the worker talks to OpenAI rather than the local backend."""
        return self.openai_api_key is not None and self.realtime_base_url is None

    @property
    def backend_base_url(self) -> str:
        """The ``base_url`` handed to livekit-plugins-openai's RealtimeModel."""
        if self.realtime_base_url:
            return self.realtime_base_url
        if self.openai_api_key:
            return OPENAI_BASE_URL
        return f"http://{self.local_realtime_host}:{self.local_realtime_port}/v1"

    @property
    def backend_api_key(self) -> str:
        """The bearer key for the backend (the plugin refuses an empty one)."""
        if self.openai_api_key:
            return self.openai_api_key
        return self.local_realtime_key or "local-no-key"

    @property
    def price_table(self) -> PriceTable:
        """AGENT_PRICES parsed (the seed's per-minute prices when unset); checked at start-up by ``_validate``."""
        return parse_prices(self.prices)

    def token_policy(self, api_key: str, api_secret: str) -> TokenPolicy:
        """The token endpoint's policy from ``AGENT_TOKEN_*`` (agent/token_endpoint.py)."""
        from .token_endpoint import TokenPolicy, parse_fields, parse_origins  # aiohttp, livekit-api: only when used

        try:
            fields_ = parse_fields(self.token_fields)
        except ValueError as e:
            raise ConfigError(f"AGENT_TOKEN_FIELDS={self.token_fields!r}: {e}") from None
        try:
            origins = parse_origins(self.token_cors_origins)
        except ValueError as e:
            raise ConfigError(f"AGENT_TOKEN_CORS_ORIGINS={self.token_cors_origins!r}: {e}") from None
        if not (60 <= self.token_ttl_s <= 24 * 3600):
            raise ConfigError(f"AGENT_TOKEN_TTL_S={self.token_ttl_s} must be between 60 and 86400 seconds")
        server_url = self.token_server_url or self.livekit_url
        if not server_url.startswith(("ws://", "wss://", "http://", "https://")):
            raise ConfigError(f"AGENT_TOKEN_SERVER_URL={server_url!r} must start with ws://, wss://, http:// or https://")
        return TokenPolicy(
            server_url=server_url, api_key=api_key, api_secret=api_secret, fields=fields_, agent_name=self.agent_name,
            cors_origins=origins, ttl_s=self.token_ttl_s, shared_secret=self.token_secret,
        )  # fmt: skip

    def require_livekit_credentials(self) -> tuple[str, str]:
        if not self.livekit_api_key or not self.livekit_api_secret:
            raise ConfigError(
                "LIVEKIT_API_KEY and LIVEKIT_API_SECRET must be set",
                hint="use a key/secret pair from the `keys:` section of livekit.yaml",
            )
        return self.livekit_api_key, self.livekit_api_secret

    @classmethod
    def env_names(cls) -> list[str]:
        return [f.metadata["env"] for f in fields(cls)]

    @classmethod
    def from_env(cls, *, dotenv_path: str | Path | None = None) -> Settings:
        """Read settings from the environment (and ``.env``, which never overrides)."""
        load_dotenv(dotenv_path or Path.cwd() / ".env", override=False)
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            raw = _env(name)
            default = f.default
            if f.type in ("float | None",):
                values[f.name] = _parse(name, raw, float, default)
            elif f.type in ("int",):
                values[f.name] = _parse(name, raw, int, default)
            elif f.type in ("float",):
                values[f.name] = _parse(name, raw, float, default)
            elif f.type in ("bool",):
                values[f.name] = _parse(name, raw, _bool, default)
            else:
                values[f.name] = raw if raw is not None else default
        settings = cls(**values)
        settings._validate()
        return settings

    @property
    def sip_rtp_range(self) -> tuple[int, int]:
        """``AGENT_SIP_RTP_PORTS`` as (first, last)."""
        first, _, last = self.sip_rtp_ports.partition("-")
        if not (first.strip().isdigit() and last.strip().isdigit() and 0 < int(first) <= int(last) < 65536):
            raise ConfigError(f"AGENT_SIP_RTP_PORTS={self.sip_rtp_ports!r} must be a port range like 10000-10100")
        return int(first), int(last)

    def _validate(self) -> None:
        log_format(self.log_format)  # raises ConfigError naming the variable
        if not (0.0 <= self.vad_threshold <= 1.0):
            raise ConfigError(f"AGENT_VAD_THRESHOLD={self.vad_threshold} must be between 0 and 1")
        if not (0.0 < self.barge_in_threshold < 1.0):
            raise ConfigError(f"AGENT_BARGE_IN_THRESHOLD={self.barge_in_threshold} must be between 0 and 1")
        if self.barge_in_min_speech_ms < 0:
            raise ConfigError(f"AGENT_BARGE_IN_MIN_SPEECH_MS={self.barge_in_min_speech_ms} must not be negative")
        if self.barge_in_resume_s <= 0:
            raise ConfigError(f"AGENT_BARGE_IN_RESUME_S={self.barge_in_resume_s} must be positive")
        if self.max_jobs < 0:
            raise ConfigError(f"AGENT_MAX_JOBS={self.max_jobs} must be 0 (no limit) or more")
        if not (0.0 < self.load_threshold <= 1.0):
            raise ConfigError(f"AGENT_LOAD_THRESHOLD={self.load_threshold} must be in (0, 1]")
        if self.num_idle_processes < 0:
            raise ConfigError("AGENT_NUM_IDLE_PROCESSES must not be negative")
        if self.local_realtime_max_session_s <= 0 or self.local_realtime_max_sessions <= 0:
            raise ConfigError("AGENT_LOCAL_REALTIME_MAX_SESSION_S and AGENT_LOCAL_REALTIME_MAX_SESSIONS must be positive")
        if self.realtime_heartbeat_s < 0 or self.realtime_connect_timeout_s <= 0 or self.realtime_max_retries < 0:
            raise ConfigError(
                "AGENT_REALTIME_HEARTBEAT_S (0 = off) and AGENT_REALTIME_MAX_RETRIES must not be negative, "
                "AGENT_REALTIME_CONNECT_TIMEOUT_S must be positive"
            )
        if self.join_timeout_s <= 0:
            raise ConfigError(f"AGENT_JOIN_TIMEOUT_S={self.join_timeout_s:g} must be positive")
        if self.silence_duration_ms < 0:
            raise ConfigError("AGENT_SILENCE_DURATION_MS must not be negative")
        if not self.livekit_url.startswith(("ws://", "wss://", "http://", "https://")):
            raise ConfigError(
                f"LIVEKIT_URL={self.livekit_url!r} must start with ws://, wss://, http:// or https://"
            )
        if not (0 <= self.metrics_port <= 65535):
            raise ConfigError(f"AGENT_METRICS_PORT={self.metrics_port} must be a TCP port, or 0 for no metrics endpoint")
        if self.records_url and not self.records_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                "AGENT_RECORDS_URL must be a PostgreSQL URL (postgresql://user:password@host:port/database)",
                hint="unset it to keep the records in SQLite at AGENT_DB_PATH",
            )
        self.sip_rtp_range  # noqa: B018  # a malformed range: one ConfigError now
        if not (0 < self.sip_port < 65536):
            raise ConfigError(f"AGENT_SIP_PORT={self.sip_port} must be a UDP/TCP port")
        self.price_table.price(self.realtime_model)  # a malformed table, or none for our model: one ConfigError now
        if self.log_level.upper() not in ("TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"AGENT_LOG_LEVEL={self.log_level!r} is not a log level")
