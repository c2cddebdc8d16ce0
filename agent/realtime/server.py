"""The WebSocket shell around ``RealtimeProtocol``: decode, receive, send.

Serves ``ws://HOST:PORT/v1/realtime`` (and ``/realtime``), with or
without ``?model=``, so that ``base_url=http://HOST:PORT/v1`` works for
livekit-plugins-openai and for the ``openai`` SDK alike.

Per connection there is one protocol object and one task group that owns
every task of the connection: the reader, the writer (one queue, so events
leave in the order the protocol produced them), the ticker (wakes at
``next_deadline()`` to stream audio) and the speech and transcription
tasks. The first task to fail cancels the others and its exception is
re-raised by ``_Connection.run`` (the handler then closes the socket with
1011); a speech or transcription task that fails in any way first ends its
response or transcript with an error event, so nothing is left waiting.
"""

from __future__ import annotations

import asyncio
import fcntl
import hmac
import itertools
import json
import logging
import secrets
import struct
import termios
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..config import Settings
from .brain import Brain, ScriptedBrain
from .client_events import parse_client_event
from .errors import ProtocolError
from .faults import FaultPlan, FaultyBrain
from .journal import Journal
from .protocol import Limits, RealtimeProtocol, SpeechRequest, TranscriptionFeed, TranscriptionRequest
from .speech import Synthesizer
from .transcribe import Transcriber

log = logging.getLogger("agent.realtime")

PATHS = ("/v1/realtime", "/realtime", "/openai/v1/realtime")
_LOGGED: dict[str, Callable[[Any], str]] = {
    "input_audio_buffer.speech_started": lambda e: f"speech started at {e.audio_start_ms} ms",
    "input_audio_buffer.speech_stopped": lambda e: f"speech stopped at {e.audio_end_ms} ms",
    "error": lambda e: f"error {e.error.code}: {e.error.message}",
    "response.done": lambda e: f"response {e.response.status}"
    + (f" ({e.response.status_details.reason})" if e.response.status_details and e.response.status_details.reason else "")
    # what the client is billed for: the metrics room test sums these lines
    + (f" usage {json.dumps(e.response.usage.model_dump(mode='json', exclude_none=True))}" if e.response.usage else ""),
}
_DROP = "\x00drop"  # outbox marker: abort the connection (fault injection)
_DROP_DELIVERY_S = 5.0  # how long a cut waits for the client to receive what came before it


@dataclass
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8765
    api_key: str | None = None  # when set, clients must send "Authorization: Bearer <key>"
    max_sessions: int = 500
    limits: Limits = field(default_factory=Limits)
    brain_factory: Callable[[], Brain] = ScriptedBrain
    journal: str | None = None  # AGENT_LOCAL_REALTIME_JOURNAL: a JSON-lines file of what sessions did (journal.py)


def _http_error(status: HTTPStatus, message: str, code: str, type_: str = "invalid_request_error") -> Response:
    body = json.dumps({"error": {"message": message, "type": type_, "code": code, "param": None}}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


def _describe(event: BaseModel) -> str:
    """A short, bounded description of an event for debug logs (no audio payloads)."""
    data = event.model_dump(mode="json", exclude_unset=True, exclude={"audio", "delta"})
    text = json.dumps(data)
    return text if len(text) <= 300 else text[:300] + "..."


def _encode(event: BaseModel) -> str:
    return json.dumps(event.model_dump(mode="json", exclude_unset=True))


def _unacknowledged_bytes(sock: Any) -> int:
    """Bytes written to ``sock`` that the peer's TCP has not acknowledged yet
    (Linux ``SIOCOUTQ``); 0 where the kernel cannot tell."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")  # TIOCOUTQ == SIOCOUTQ
    except (OSError, AttributeError):
        return 0
    return int(struct.unpack("i", raw)[0])


async def _delivered(ws: ServerConnection, timeout: float) -> bool:
    """Wait until every byte written to ``ws`` is in the client's hands: out of
    asyncio's buffer and acknowledged by the client's TCP (which keeps it even if
    a reset follows). False if that took longer than ``timeout``."""
    transport = ws.transport
    sock = transport.get_extra_info("socket")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while transport.get_write_buffer_size() or (sock is not None and _unacknowledged_bytes(sock)):
        if loop.time() >= deadline or transport.is_closing():
            return False
        await asyncio.sleep(0.005)  # the kernel gives no wake-up for an ACK; poll briefly
    return True


class RealtimeServer:
    """Accepts Realtime WebSocket sessions; one ``RealtimeProtocol`` each."""

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.synth = Synthesizer()
        self.transcriber = Transcriber()
        self.sessions = 0
        self._ids = itertools.count(1)
        self._faults_done: set[str] = set()  # fault injection: each scripted drop happens once
        self._server: Server | None = None
        self.journal = Journal(self.options.journal) if self.options.journal else None

    async def start(self) -> None:
        opts = self.options
        # Our own size limit answers with an error event; the transport limit
        # sits above it so that an oversized event does not close the socket.
        self._server = await serve(
            self._handle,
            opts.host,
            opts.port,
            process_request=self._check_request,
            max_size=opts.limits.max_event_bytes * 2,
            ping_interval=20,
            ping_timeout=20,
        )
        self.transcriber.warm_up()
        log.info("realtime server listening on ws://%s:%d/v1/realtime", opts.host, self.port)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.transcriber.close()
        await self.synth.aclose()
        if self.journal is not None:
            self.journal.close()

    async def serve_forever(self) -> None:
        await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlparse(request.path).path.rstrip("/")
        if path not in PATHS:
            return _http_error(HTTPStatus.NOT_FOUND, f"No realtime endpoint at {path!r}; use /v1/realtime.", "not_found")
        key = self.options.api_key
        if key:
            auth = request.headers.get("Authorization", "")
            given = auth[7:] if auth.startswith("Bearer ") else ""
            if not hmac.compare_digest(given.encode(), key.encode()):
                return _http_error(
                    HTTPStatus.UNAUTHORIZED,
                    "Incorrect API key provided. You can set the key with AGENT_LOCAL_REALTIME_KEY.",
                    "invalid_api_key",
                )
        if self.sessions >= self.options.max_sessions:
            return _http_error(
                HTTPStatus.TOO_MANY_REQUESTS,
                f"This server holds at most {self.options.max_sessions} concurrent sessions.",
                "session_limit_reached",
                "rate_limit_error",
            )
        return None

    def _fault_once(self, key: str) -> bool:
        if key in self._faults_done:
            return False
        self._faults_done.add(key)
        return True

    async def _handle(self, ws: ServerConnection) -> None:
        query = urlparse(ws.request.path).query if ws.request else ""
        model = "gpt-realtime"
        for part in query.split("&"):
            if part.startswith("model="):
                model = part[6:] or model
        session_id = f"sess_{secrets.token_hex(8)}"
        brain = FaultyBrain(self.options.brain_factory())
        proto = RealtimeProtocol(
            session_id=session_id,
            brain=brain,
            now=time.monotonic(),
            model=model,
            limits=self.options.limits,
            id_prefix=f"{next(self._ids):04d}",
        )
        conn = _Connection(self, ws, proto, FaultPlan(brain, self._fault_once))
        self.sessions += 1
        log.info("session %s opened (%d active)", session_id, self.sessions)
        if self.journal is not None:
            self.journal.write(session_id, "session_opened", model=model)
        try:
            await conn.run()
        finally:
            self.sessions -= 1
            log.info("session %s closed (%d active)", session_id, self.sessions)
            if self.journal is not None:
                self.journal.write(session_id, "session_closed")


class _Connection:
    def __init__(self, server: RealtimeServer, ws: ServerConnection, proto: RealtimeProtocol, faults: FaultPlan) -> None:
        self._server = server
        self._ws = ws
        self._proto = proto
        self._faults = faults
        self._dropped = False  # fault injection cut the connection: nothing more is sent
        self._voiced: str | None = None  # the last response whose first audio was logged
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None  # owns every task of this connection while it runs
        self._work: set[asyncio.Task[None]] = set()  # its speech and transcription tasks
        self._streams: set[str] = set()  # items whose turn is being decoded as it comes (cancelled at the end)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        assert self._tasks is not None, "tasks are started only while the connection runs"
        task = self._tasks.create_task(coro, name=name)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    def _emit(self, events: list[BaseModel]) -> None:
        if self._dropped:
            return  # the fault cut this connection: nothing more goes out, nothing new starts
        journal = self._server.journal
        for event in events:
            self._outbox.put_nowait(_encode(event))
            if journal is not None:
                journal.server_event(self._proto.session_id, event)
            if self._faults.should_drop(event):
                self._dropped = True
                self._outbox.put_nowait(_DROP)
            kind = getattr(event, "type", "")
            if kind == "response.output_audio.delta" and event.response_id != self._voiced:  # type: ignore[attr-defined]
                # one line per response: with speech stopped's line, the backend's own share of a reply's latency
                self._voiced = event.response_id  # type: ignore[attr-defined]
                log.info("session %s: response %s first audio", self._proto.session_id, self._voiced)
            elif kind != "response.output_audio.delta" and log.isEnabledFor(logging.DEBUG):
                log.debug("session %s -> %s", self._proto.session_id, _describe(event))
            if kind in _LOGGED:
                # one line per turn event: what operators (and the echo tests) count
                log.info("session %s: %s", self._proto.session_id, _LOGGED[kind](event))
            if self._dropped:
                return
        for request in self._proto.speech_requests():
            self._faults.speech(request.request_id, request.text)
            self._spawn(self._synthesize(request), f"speech:{request.request_id}")
        for job in self._proto.transcription_requests():
            if isinstance(job, TranscriptionFeed):
                self._feed(job)
            else:
                self._streams.discard(job.item_id)
                self._spawn(self._transcribe(job), f"transcribe:{job.item_id}")
        if self._proto.closed:
            self._outbox.put_nowait(None)
        self._wake.set()

    async def _synthesize(self, request: SpeechRequest) -> None:
        try:
            pcm = await self._server.synth.synthesize(request.text, request.voice)
        except Exception as e:  # any failure, not only SpeechError: the response must not wait forever
            log.error("speech synthesis failed: %s: %s", type(e).__name__, e)
            self._emit(self._proto.speech_failed(request.request_id, f"{type(e).__name__}: {e}", time.monotonic()))
            return
        fmt = self._proto.session.audio.output.format.type if self._proto.session.audio else None  # type: ignore[union-attr]
        self._faults.speech_ready(request.request_id, pcm, fmt or "audio/pcm")
        self._emit(self._proto.speech_ready(request.request_id, pcm, time.monotonic()))

    def _feed(self, job: TranscriptionFeed) -> None:
        """A turn in progress: decode it as it comes (agent/realtime/transcribe.py)."""
        key = f"{self._proto.session_id}/{job.item_id}"
        if job.pcm is None:
            self._streams.discard(job.item_id)
            self._server.transcriber.cancel(key)
        else:
            self._streams.add(job.item_id)
            self._server.transcriber.feed(key, job.pcm)

    async def _transcribe(self, job: TranscriptionRequest) -> None:
        started = time.monotonic()
        try:
            text = None
            if job.streamed:
                text = await self._server.transcriber.finish(f"{self._proto.session_id}/{job.item_id}")
            how = "streamed"
            if text is None:  # not streamed, or the stream was dropped: the whole turn
                text = await self._server.transcriber.transcribe(job.pcm)
                how = "whole"
        except Exception as e:  # any failure: the response waiting for these words goes on without them
            log.error("transcription failed: %s: %s", type(e).__name__, e)
            self._emit(self._proto.transcription_failed(job.item_id, f"{type(e).__name__}: {e}", time.monotonic()))
            return
        # A response waits for these words (up to Limits.transcript_wait_s): the
        # time they took is most of a slow answer's delay, so it is logged.
        log.info("session %s: transcript of %s ready %.0f ms after its commit (%s)",
                 self._proto.session_id, job.item_id, (time.monotonic() - started) * 1000, how)  # fmt: skip
        self._emit(self._proto.transcription_ready(job.item_id, text, time.monotonic()))

    async def run(self) -> None:
        """Serve the connection until the client leaves or the session ends;
        re-raises the first failure of any of its tasks."""
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                writer = tasks.create_task(self._write(), name="realtime_writer")
                ticker = tasks.create_task(self._tick(), name="realtime_ticker")
                self._emit(self._proto.start())
                await self._read()
                # The client left (or the session ended): stop everything else.
                # Cancelling our own children is not a failure of the group.
                for task in (writer, ticker):
                    task.cancel()
                self._cancel_work()
        except BaseExceptionGroup as group:
            # One task failed first; the group cancelled the rest. Re-raise it as
            # itself, so that logs and callers see the real error.
            raise group.exceptions[0] from None
        finally:
            self._tasks = None
            for item_id in self._streams:  # turns cut off by the end of the connection
                self._server.transcriber.cancel(f"{self._proto.session_id}/{item_id}")
            self._streams.clear()

    def _cancel_work(self) -> None:
        for task in list(self._work):
            task.cancel()

    async def _read(self) -> None:
        limit = self._proto.limits.max_event_bytes
        try:
            async for message in self._ws:
                now = time.monotonic()
                try:
                    event = parse_client_event(message, max_bytes=limit)
                except ProtocolError as err:
                    self._emit(self._proto.error_event(err))
                    continue
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("session %s <- %s", self._proto.session_id, _describe(event))
                if self._server.journal is not None:
                    self._server.journal.client_event(self._proto.session_id, event)
                self._emit(self._proto.receive(event, now))
                if self._proto.closed:
                    break
        except ConnectionClosed:
            pass

    async def _write(self) -> None:
        while True:
            text = await self._outbox.get()
            if text is None:
                # The protocol ended the session (e.g. session_expired): close like OpenAI does.
                await self._ws.close(1000, "session ended")
                return
            if text is _DROP:
                # The fault is a network failure *after* the client got what was
                # sent (the call, up to its response.done), so wait for delivery.
                # Aborting at once loses it: asyncio drops its unsent buffer, and
                # closing a socket with unread input (the caller's audio never
                # stops) sends RST, which discards what the kernel had not yet
                # delivered -- all of it when the client was slow to read.
                started = time.monotonic()
                delivered = await _delivered(self._ws, _DROP_DELIVERY_S)
                log.warning(
                    "fault injection: dropping the connection (no close frame) %.0f ms after the last event, %s",
                    (time.monotonic() - started) * 1000,
                    "all delivered" if delivered else "NOT all delivered",
                )
                self._ws.transport.abort()
                return
            try:
                await self._ws.send(text)
            except ConnectionClosed:
                return

    async def _tick(self) -> None:
        while True:
            deadline = self._proto.next_deadline()
            self._wake.clear()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                # asyncio.timeout, not wait_for: no inner task that a cancel must chase
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass
            events = self._proto.tick(time.monotonic())
            if events:
                self._emit(events)


def options_from_env(host: str | None = None, port: int | None = None) -> ServerOptions:
    """Server options from the settings (AGENT_LOCAL_REALTIME_*, AGENT_BRAIN_SCRIPT; see README)."""
    settings = Settings.from_env()
    brain_factory: Callable[[], Brain] = ScriptedBrain
    if settings.brain_script:
        loaded = ScriptedBrain.from_file(settings.brain_script)
        brain_factory = lambda: loaded  # noqa: E731 - brains are stateless, share one
    return ServerOptions(
        host=host or settings.local_realtime_host,
        port=port if port is not None else settings.local_realtime_port,
        api_key=settings.local_realtime_key,
        max_sessions=settings.local_realtime_max_sessions,
        limits=Limits(max_session_s=settings.local_realtime_max_session_s),
        brain_factory=brain_factory,
        journal=settings.local_realtime_journal,
    )


async def run(options: ServerOptions) -> None:
    server = RealtimeServer(options)
    await server.serve_forever()
