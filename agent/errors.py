"""One exception tree for the project.

    AgentError                      base; ``retryable`` says whether trying again can help
    ├── ConfigError                 a setting is missing or wrong (never retryable)
    │   └── ServerConfigError       livekit.yaml missing, unreadable or invalid
    ├── SetupError                  a tool the project needs is absent (go, espeak-ng, ...)
    ├── SpeechError                 espeak-ng is missing or failed to speak (also a RuntimeError)
    ├── AudioFormatError            audio that cannot be in its declared format (also a ValueError)
    ├── StoreError                  a request the demo store refuses: no such item or order (also a ValueError)
    ├── RequestError                an operator's request refused before it is sent (a room name no one
    │                               could join, metadata that is not JSON)
    ├── BackendError                a peer we depend on failed
    │   ├── LiveKitUnavailable      livekit-server unreachable (retryable)
    │   ├── LiveKitAuthError        the server refused our key/secret (not retryable)
    │   ├── RealtimeUnavailable     the realtime backend is unreachable (retryable)
    │   └── RecordsUnavailable      the session-records database cannot be reached or refused a write (retryable)
    └── TranscriptionError          the local server's recognizer failed on an utterance
                                    (retryable when busy or crashed, not when not installed)

``retryable`` is read where retries are decided: the worker's preflight
(``agent.preflight.preflight``) retries an error that says it can help, and
gives up at once on one that says it cannot.

Protocol errors inside the local realtime server are not exceptions that
cross this tree: they become ``error`` events on the wire (see
``agent.realtime.errors``, the table of OpenAI's codes).
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the project raises on purpose."""

    retryable: bool = False

    def __init__(self, message: str, *, hint: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if retryable is not None:  # the class says what is usual; one case may know better
            self.retryable = retryable

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(AgentError):
    """A setting is missing or wrong."""


class ServerConfigError(ConfigError):
    """livekit.yaml is missing, unreadable or invalid."""


class SetupError(AgentError):
    """Something the project needs on this machine is missing."""


class SpeechError(AgentError, RuntimeError):
    """espeak-ng is missing or failed (``agent.sound.espeak``).

    Also a ``RuntimeError``, as it was before it joined this tree.
    """


class AudioFormatError(AgentError, ValueError):
    """Audio bytes or a WAV file that cannot be in the declared format.

    Also a ``ValueError``: the realtime protocol and the trace report catch
    bad input as one.
    """


class RequestError(AgentError):
    """An operator's request (``python -m agent dispatch ...``) refused before
    anything is sent: nothing has changed anywhere."""


class BackendError(AgentError):
    """A service we depend on failed."""


class LiveKitUnavailable(BackendError):
    retryable = True


class LiveKitAuthError(BackendError):
    retryable = False

    @classmethod
    def refused(cls, url: str, api_key: str, message: str) -> LiveKitAuthError:
        """livekit-server at ``url`` answered 401/403 to ``api_key``."""
        return cls(
            f"livekit-server at {url} refused API key {api_key!r}: {message}",
            hint="LIVEKIT_API_KEY/LIVEKIT_API_SECRET must match a pair under `keys:` in the server's livekit.yaml",
        )


class RealtimeUnavailable(BackendError):
    retryable = True


class RecordsUnavailable(BackendError):
    """The session records' database (SQLite file or PostgreSQL) failed (``agent.records``)."""

    retryable = True


class TranscriptionError(AgentError):
    """The local realtime server could not transcribe an utterance.

    It reaches the client as a ``conversation.item.input_audio_transcription.failed``
    event; the session goes on."""

    retryable = True  # a busy or crashed decoder: the next utterance may well succeed


class StoreError(AgentError, ValueError):
    """A request the demo store refuses (unknown item, no such order...); the message is for the caller.

    Also a ``ValueError``, as it was before it joined this tree (``agent.tools.store``).
    """
