"""The bot link: one trio task that owns the WebSocket to the Pipecat bot and keeps it up across outages.

`Link.run` connects (optionally through the start endpoint), sends the serializer's opening messages and
RTVI ``client-ready``, then reads, writes and pings concurrently until the session ends, and reconnects
by the `ReconnectPolicy`. Decoded events go to the app through a bounded channel that the link never
waits on: audio that does not fit is dropped and counted; other events queue in a small backlog behind
it so a slow consumer loses speech, never a state change. Mic audio and RTVI messages are handed in
without blocking (messages go ahead of audio). State changes are published through `status` and
`subscribe`, logged one line per change, and repeated identical failures are not logged each time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import socket
import ssl
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import trio
import trio_websocket
from trio_websocket import CloseReason, ConnectionClosed, ConnectionRejected

from voiceterm.config import Config
from voiceterm.core.latency import LatencyRecorder
from voiceterm.core.linkstate import LinkState, LinkStatus
from voiceterm.core.reconnect import DEFAULT_STABLE_AFTER, ReconnectPolicy
from voiceterm.io.lograte import RepeatSuppressor, Throttle
from voiceterm.io.start_endpoint import (
    StartEndpointError,
    call_start_endpoint,
    find_in_chain,
    mask_url,
    url_with_token,
)
from voiceterm.logs import kv, redact
from voiceterm.protocol import rtvi
from voiceterm.protocol.base import Serializer
from voiceterm.protocol.errors import ProtocolError
from voiceterm.protocol.events import AudioChunk, Event, Interruption
from voiceterm.protocol.registry import get_serializer

if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10 only
    from exceptiongroup import BaseExceptionGroup

log = logging.getLogger("voiceterm.link")

CONTROL_BACKLOG = 64  # non-audio events held for a slow consumer before the oldest is dropped
MESSAGE_QUEUE = 16  # outgoing RTVI messages waiting for the socket
CLOSE_GRACE = 0.4  # seconds for disconnect-bot and the close handshake when closing on purpose
CLOSE_DEADLINE = 1.0  # close() returns within this, whatever the peer does
_RETRIABLE_HTTP = frozenset({408, 425, 429})


# --- link-level events (delivered on `Link.events` alongside the decoded bot events) ---------------


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """A new WebSocket session (a brand-new bot session) is open: flush playback, forget turn state."""

    session: int
    url: str  # masked: no token


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The session is over; `reason` is one line for a person (never holds a secret)."""

    session: int
    reason: str
    failure: bool  # False when it ended on purpose (close, reconnect_now)


@dataclass(frozen=True, slots=True)
class ReceivedAudio(AudioChunk):
    """Bot audio as the link delivers it: an `AudioChunk` stamped with when its message arrived
    (trio.current_time() right after the WebSocket read), so the speaker can measure its own latency."""

    received_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ReceivedInterruption(Interruption):
    """A protocol interruption, stamped like `ReceivedAudio`: the playback flush it causes is timed from it."""

    received_at: float = 0.0


@dataclass(slots=True)
class LinkCounters:
    """Monotonic counters for the status socket and the metrics file."""

    sent_audio_total: int = 0
    sent_audio_bytes_total: int = 0
    dropped_outgoing_audio_total: int = 0
    sent_messages_total: int = 0
    dropped_messages_total: int = 0
    received_audio_total: int = 0
    received_audio_bytes_total: int = 0
    received_events_total: int = 0
    dropped_incoming_total: int = 0
    dropped_incoming_audio_bytes_total: int = 0  # the audio share of dropped_incoming_total, in bytes
    garbage_frames_total: int = 0
    connects_total: int = 0
    failures_total: int = 0
    start_calls_total: int = 0
    pings_sent_total: int = 0
    pings_timed_out_total: int = 0
    ready_timeouts_total: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Failure:
    reason: str
    unfixable: bool = False


@dataclass(frozen=True, slots=True)
class _Target:
    url: str  # what to open (may hold the token)
    shown: str  # masked, for logs and status
    token_sent: bool


class _SetupError(Exception):
    """A local problem a retry cannot fix (an unreadable CA file): its message is the whole story."""


class _SessionEnd:
    """The first reason a session ends wins; the tasks of the session all report here."""

    def __init__(self, scope: trio.CancelScope) -> None:
        self._scope = scope
        self.failure: _Failure | None = None
        self.reason: str | None = None

    def claim(self, reason: str, *, failure: _Failure | None = None) -> None:
        """Record why the session ends without stopping it yet (a goodbye is still to be sent)."""
        if self.reason is None:
            self.reason = reason
            self.failure = failure

    def set(self, reason: str, *, failure: _Failure | None = None) -> None:
        self.claim(reason, failure=failure)
        self._scope.cancel()


# --- failure descriptions --------------------------------------------------------------------------


def _first_real(exc: BaseException) -> BaseException | None:
    """`exc` without exception-group wrapping: its first member that is not a trio.Cancelled."""
    if isinstance(exc, BaseExceptionGroup):
        for member in exc.exceptions:
            found = _first_real(member)
            if found is not None:
                return found
        return None
    if isinstance(exc, trio.Cancelled):
        return None
    return exc


def describe_close(reason: CloseReason | None, *, max_message_bytes: int) -> _Failure:
    """A closed WebSocket in words, with whether reconnecting can help."""
    if reason is None:
        return _Failure("connection closed")
    code = reason.code
    text = redact(reason.reason or "")[:80]
    if code == 1000:
        return _Failure("bot ended the session (close code 1000)")
    if code == 1001:
        return _Failure("bot is going away (close code 1001)")
    if code == 1006:
        return _Failure("connection lost (no close frame)")
    if code == 1009:
        if text.startswith("Exceeded maximum message size"):
            return _Failure(
                f"bot sent a message over the {max_message_bytes}-byte limit (closed with 1009); "
                "raise bot.max_message_bytes if the bot is right"
            )
        return _Failure("bot closed: a message was too big for it (close code 1009)")
    if code == 1011:
        return _Failure("bot hit an internal error (close code 1011)")
    if code == 1013:
        return _Failure("bot is busy with another client (close code 1013)")
    if code == 4003:
        return _Failure(
            "bot rejected the session (close code 4003: token or Origin not accepted)", unfixable=True
        )
    return _Failure(f"bot closed the connection (close code {code}{': ' + text if text else ''})")


def describe_exception(exc: BaseException, *, token_sent: bool, connect_timeout: float) -> _Failure:
    """A failed connect attempt in words a person understands, with whether a retry can help."""
    if isinstance(exc, StartEndpointError):
        return _Failure(str(exc), exc.unfixable)
    if isinstance(exc, _SetupError):
        return _Failure(str(exc), unfixable=True)
    if isinstance(exc, trio.TooSlowError):
        return _Failure(f"no answer within {connect_timeout:g} s (bot.connect_timeout)")
    if isinstance(exc, ConnectionRejected):
        status = exc.status_code
        if status in (401, 403):
            if token_sent:
                return _Failure(f"bot rejected the token (HTTP {status})", unfixable=True)
            return _Failure(
                f"bot refused the connection (HTTP {status}); it may need bot.token or another bot.origin",
                unfixable=True,
            )
        if 400 <= status < 500 and status not in _RETRIABLE_HTTP:
            return _Failure(f"bot refused the WebSocket upgrade (HTTP {status}); check bot.url", True)
        return _Failure(f"bot refused the WebSocket upgrade (HTTP {status})")
    if isinstance(exc, ConnectionClosed):
        return _Failure(f"connection closed during the handshake ({exc.reason.code if exc.reason else '-'})")
    if isinstance(exc, ProtocolError):
        return _Failure(f"cannot start the session: {exc}")
    cert = find_in_chain(exc, ssl.SSLCertVerificationError)
    if cert is not None:
        detail = getattr(cert, "verify_message", None) or "certificate not trusted"
        return _Failure(
            f"TLS certificate verification failed ({detail}); set bot.ca_file if the bot uses a private CA",
            unfixable=True,
        )
    tls = find_in_chain(exc, ssl.SSLError)
    if tls is not None:
        return _Failure(f"TLS handshake failed ({getattr(tls, 'reason', None) or type(tls).__name__})")
    gai = find_in_chain(exc, socket.gaierror)
    if gai is not None:
        return _Failure("host name not found (DNS)")
    if find_in_chain(exc, ConnectionRefusedError) is not None:
        return _Failure("connection refused")
    oserror = find_in_chain(exc, OSError, lambda e: bool(e.strerror)) or find_in_chain(exc, OSError)
    if oserror is not None:
        return _Failure(f"cannot connect: {oserror.strerror or type(oserror).__name__}")
    if find_in_chain(exc, (trio.BrokenResourceError, trio.ClosedResourceError)) is not None:
        return _Failure("connection lost during the handshake")
    return _Failure(f"unexpected {type(exc).__name__} while connecting")


# --- the link --------------------------------------------------------------------------------------


class Link:
    """The WebSocket to the bot, kept alive. Run `run` in a nursery; use the rest from any trio task."""

    def __init__(
        self,
        config: Config,
        *,
        serializer_cls: type[Serializer] | None = None,
        events_capacity: int = 256,
        outgoing_audio_capacity: int = 50,
        rng: random.Random | None = None,
        device_id: str | None = None,
        stable_after: float = DEFAULT_STABLE_AFTER,
    ) -> None:
        self.config = config
        self._bot = config.bot
        self._serializer_cls = serializer_cls or get_serializer(config.bot.serializer)
        self._device_id = device_id or config.device_id
        self._policy = ReconnectPolicy.from_config(config.reconnect, rng=rng, stable_after=stable_after)
        self._send_events, self.events = trio.open_memory_channel[Any](events_capacity)
        self._backlog: deque[Any] = deque()
        self._backlog_wakeup = trio.Event()
        self._audio_out: deque[tuple[bytes, int, float | None]] = deque()
        self._audio_capacity = outgoing_audio_capacity
        self._audio_in_send = 0  # 1 while a chunk taken from the queue is being written to the socket
        self._messages_out: deque[dict[str, Any]] = deque()
        self._out_wakeup = trio.Event()
        self.status = LinkStatus()
        self.counters = LinkCounters()
        # capture_to_send: a mic chunk's capture (read returned) to its WebSocket send having returned.
        self.latency = {"capture_to_send": LatencyRecorder()}
        self._subscribers: list[Callable[[LinkStatus], None]] = []
        self._serializer: Serializer | None = None
        self._session = 0
        self._shown_url = mask_url(self._bot.endpoint or self._bot.url)
        self._running = False
        self._closing = False
        self._graceful = True
        self._stopped = trio.Event()
        self._run_scope: trio.CancelScope | None = None
        self._wait_scope: trio.CancelScope | None = None  # backing off / failed: cancel to act now
        self._connect_scope: trio.CancelScope | None = None  # connecting: cancel on close
        self._end_request = trio.Event()
        self._end_reason = ""
        self._ssl_context: ssl.SSLContext | None = None
        self._http: Any = None  # httpx.AsyncClient in endpoint mode
        self._failures = RepeatSuppressor()
        self._garbage_log = Throttle(60.0)
        self._encode_log = Throttle(60.0)
        self._callback_log = Throttle(60.0)
        self._bot_error_log = Throttle(60.0)
        self._ready_timeout_logged = False
        self._down_since: float | None = None  # first failure of the current outage
        self._young_failure: str | None = None  # why the last session ended, if it ended young

    # --- the app's side -----------------------------------------------------------------------------

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: take the new [reconnect] and [heartbeat] settings. The attempt count carries over; the
        next delay uses the new values, and so do the pings of the next session. [bot] changes need a
        restart (the app names them)."""
        self._policy.initial_delay = config.reconnect.initial_delay
        self._policy.multiplier = config.reconnect.multiplier
        self._policy.max_delay = max(config.reconnect.max_delay, config.reconnect.initial_delay)
        self._policy.jitter = config.reconnect.jitter
        self._policy.max_attempts = config.reconnect.max_attempts
        self.config = dataclasses.replace(self.config, reconnect=config.reconnect, heartbeat=config.heartbeat)

    def subscribe(self, callback: Callable[[LinkStatus], None]) -> None:
        """Call `callback(status)` synchronously, in the link task, after every status change."""
        self._subscribers.append(callback)

    def send_audio(self, pcm: bytes, sample_rate: int, captured_at: float | None = None) -> bool:
        """Queue one mic chunk. False (and counted) when the link is down or the queue is full.

        `captured_at` (trio time the capture read returned) times the chunk's way to the socket.
        """
        if (
            not self.status.state.is_up
            or not isinstance(pcm, (bytes, bytearray))
            or len(self._audio_out) >= self._audio_capacity
        ):
            self.counters.dropped_outgoing_audio_total += 1
            return False
        self._audio_out.append((bytes(pcm), sample_rate, captured_at))
        self._out_wakeup.set()
        return True

    def send_message(self, message: dict[str, Any]) -> bool:
        """Queue one RTVI message ahead of any queued audio. False (and counted) when it cannot go."""
        serializer = self._serializer
        if (
            not self.status.state.is_up
            or serializer is None
            # A format without RTVI may still carry some messages (Twilio: dtmf).
            or not (serializer.supports_rtvi or getattr(serializer, "carries", lambda _m: False)(message))
            or len(self._messages_out) >= MESSAGE_QUEUE
        ):
            self.counters.dropped_messages_total += 1
            return False
        self._messages_out.append(message)
        self._out_wakeup.set()
        return True

    def wake(self) -> None:
        """Leave FAILED (a button press): restart the attempt budget and try at once."""
        if self.status.state is LinkState.FAILED:
            self._policy.reset()
            self._cancel_wait()

    def reconnect_now(self) -> None:
        """End the current session (if any) and connect again at once, with a fresh attempt budget."""
        self._policy.reset()
        state = self.status.state
        if state.is_up:
            self._request_end("reconnect requested")
        elif state in (LinkState.BACKING_OFF, LinkState.FAILED):
            self._cancel_wait()

    async def close(self, *, graceful: bool = True) -> None:
        """Stop the link: say goodbye to the bot when graceful (disconnect-bot), close the socket.

        Returns within about a second whatever the peer does.
        """
        self._closing = True
        self._graceful = graceful
        if not self._running:
            self._send_events.close()
            return
        self._request_end("closing")
        self._cancel_wait()
        if self._connect_scope is not None:
            self._connect_scope.cancel()
        with trio.move_on_after(CLOSE_DEADLINE):
            await self._stopped.wait()
        if not self._stopped.is_set() and self._run_scope is not None:
            self._run_scope.cancel()
            await self._stopped.wait()

    def snapshot(self) -> dict[str, Any]:
        """The link's state and counters as plain JSON-able data (no secrets)."""
        status = self.status
        return {
            "state": status.state.value,
            "attempts": status.attempt,
            "last_error": status.last_error,
            "unfixable": status.unfixable,
            "connects_total": status.connects_total,
            "session": self._session,
            "since": status.since,
            "url": self._shown_url,
            "serializer": self._serializer_cls.name,
            "outgoing_audio_queued": len(self._audio_out),
            "outgoing_audio_in_send": self._audio_in_send,
            "outgoing_messages_queued": len(self._messages_out),
            "incoming_backlog": len(self._backlog),
            **self.counters.as_dict(),
        }

    # --- the task ------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the link up until `close`. Reports started at once: the bot may well be down at boot."""
        if self._running or self._stopped.is_set():
            raise RuntimeError("Link.run() can only be called once")
        self._running = True
        try:
            with trio.CancelScope() as self._run_scope:
                task_status.started()
                if self._closing:
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._flush_backlog)
                    try:
                        await self._with_http(self._loop)
                    finally:
                        nursery.cancel_scope.cancel()
        finally:
            self._serializer = None
            self._drop_outgoing()
            self._set_state(LinkState.OFFLINE)
            if self._closing:
                log.info(kv(state="offline", reason="closed"))
            self._send_events.close()
            self._running = False
            self._stopped.set()

    async def _with_http(self, body: Callable[[], Any]) -> None:
        if not self._bot.endpoint:
            await body()
            return
        import httpx

        verify: Any = True
        if self._bot.endpoint.startswith("https:"):
            # An unusable bot.ca_file is reported by every attempt (_resolve_target), not raised here.
            with contextlib.suppress(_SetupError):
                verify = self._tls_context()
        async with httpx.AsyncClient(verify=verify, follow_redirects=False) as client:
            self._http = client
            try:
                await body()
            finally:
                self._http = None

    async def _loop(self) -> None:
        while not self._closing:
            self._set_state(LinkState.CONNECTING, attempt=self._policy.attempts)
            log.debug(kv(state="connecting", attempt=self._policy.attempts + 1, url=self._shown_url))
            failure = await self._attempt()
            if self._closing:
                return
            if failure is None:
                continue  # ended on purpose (reconnect_now): straight back in
            self.counters.failures_total += 1
            decision = self._policy.on_failure(unfixable=failure.unfixable)
            now = trio.current_time()
            if self._down_since is None:
                self._down_since = now
            if decision.give_up:
                self._set_state(
                    LinkState.FAILED,
                    attempt=decision.attempt,
                    last_error=failure.reason,
                    unfixable=failure.unfixable,
                )
                log.error(
                    kv(state="failed", attempts=decision.attempt, error=failure.reason)
                    + " (giving up until a button press)"
                )
                self._failures.clear()
                await self._wait(None)
                continue
            self._set_state(
                LinkState.BACKING_OFF,
                attempt=decision.attempt,
                last_error=failure.reason,
                unfixable=failure.unfixable,
                retry_in=decision.delay,
            )
            self._log_failure(failure, decision.attempt, decision.delay, now)
            await self._wait(decision.delay)

    def _log_failure(self, failure: _Failure, attempt: int, delay: float, now: float) -> None:
        report = self._failures.failure(failure.reason, now)
        context = {
            "state": "backing-off",
            "attempt": attempt,
            "delay": f"{delay:.1f}s",
            "error": failure.reason,
            "unfixable": "yes" if failure.unfixable else None,
        }
        if report is None:
            log.debug(kv(**context))
        elif report.kind == "new":
            log.warning(kv(**context))
        else:
            down = now - (self._down_since if self._down_since is not None else report.since)
            log.warning(
                "still failing "
                + kv(
                    attempts=report.repeats, down=f"{down:.0f}s", error=failure.reason, delay=f"{delay:.1f}s"
                )
            )

    async def _wait(self, delay: float | None) -> None:
        with trio.CancelScope() as scope:
            self._wait_scope = scope
            try:
                if delay is None:
                    await trio.sleep_forever()
                else:
                    await trio.sleep(delay)
            finally:
                self._wait_scope = None

    def _cancel_wait(self) -> None:
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    def _request_end(self, reason: str) -> None:
        self._end_reason = reason
        self._end_request.set()

    # --- one attempt: target, stream, handshake, session -------------------------------------------

    async def _attempt(self) -> _Failure | None:
        stream: trio.abc.Stream | None = None
        target: _Target | None = None
        self._end_request = trio.Event()
        try:
            with trio.CancelScope() as connect_scope:
                self._connect_scope = connect_scope
                deadline = trio.current_time() + self._bot.connect_timeout
                with trio.fail_at(deadline):
                    target = await self._resolve_target()
                    stream = await self._open_stream(target.url)
            self._connect_scope = None
            if connect_scope.cancelled_caught or stream is None or target is None:
                return None  # close() while connecting
            failure: _Failure | None = None
            async with trio.open_nursery() as conn_nursery:
                # trio-websocket runs its reader task in conn_nursery; a rejected upgrade is raised there.
                with trio.CancelScope() as handshake_scope:
                    self._connect_scope = handshake_scope
                    with trio.fail_at(deadline):
                        ws = await trio_websocket.wrap_client_stream(
                            conn_nursery,
                            stream,
                            _host_header(target.url),
                            _resource(target.url),
                            extra_headers=self._upgrade_headers(),
                            message_queue_size=8,
                            max_message_size=self._bot.max_message_bytes,
                        )
                self._connect_scope = None
                if not handshake_scope.cancelled_caught:
                    failure = await self._session_run(ws, target)
                conn_nursery.cancel_scope.cancel()  # stops trio-websocket's reader task
            return failure
        except BaseException as exc:
            real = _first_real(exc)
            if real is None or not isinstance(real, Exception):
                raise
            failure = describe_exception(
                real,
                token_sent=bool(target and target.token_sent),
                connect_timeout=self._bot.connect_timeout,
            )
            if failure.reason.startswith("unexpected"):
                log.debug("unexpected error while connecting", exc_info=real)
            return failure
        finally:
            self._connect_scope = None
            if stream is not None:
                # Forcefully: a graceful TLS close would wait on a peer that may be a black hole.
                await trio.aclose_forcefully(stream)

    async def _resolve_target(self) -> _Target:
        bot = self._bot
        if not bot.endpoint:
            url = url_with_token(bot.url, bot.token or None)
            return _Target(url=url, shown=mask_url(url), token_sent=bool(bot.token))
        if bot.endpoint.startswith("https:"):
            self._tls_context()  # raises _SetupError when bot.ca_file is unusable
        self.counters.start_calls_total += 1
        result = await call_start_endpoint(
            self._http,
            bot.endpoint,
            body=bot.endpoint_body,
            headers=bot.endpoint_headers,
            bearer_token=bot.token or None,
            timeout=bot.connect_timeout,
        )
        url = result.connect_url
        return _Target(url=url, shown=mask_url(url), token_sent=result.token is not None)

    async def _open_stream(self, url: str) -> trio.abc.Stream:
        parts = urlsplit(url)
        tls = parts.scheme == "wss"
        host = parts.hostname or ""
        port = parts.port or (443 if tls else 80)
        context = self._tls_context() if tls else None
        tcp = await trio.open_tcp_stream(host, port)
        if context is None:
            return tcp
        stream = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=True)
        try:
            # Handshake now, so a certificate problem is reported as such and not as a lost connection.
            await stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(tcp)
            raise
        return stream

    def _tls_context(self) -> ssl.SSLContext:
        """Certificate verification on (the default context), plus bot.ca_file's CAs when set."""
        if self._ssl_context is None:
            context = ssl.create_default_context()
            if self._bot.ca_file:
                try:
                    context.load_verify_locations(cafile=self._bot.ca_file)
                except (OSError, ssl.SSLError) as e:
                    raise _SetupError(
                        f"cannot load bot.ca_file {self._bot.ca_file}: "
                        f"{getattr(e, 'reason', None) or e.strerror or type(e).__name__}; "
                        "it must hold PEM certificates"
                    ) from None
            self._ssl_context = context
        return self._ssl_context

    def _upgrade_headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self._bot.headers.items()]
        if self._bot.origin:
            headers.append((b"Origin", self._bot.origin.encode("latin-1")))
        return headers

    # --- the session ---------------------------------------------------------------------------------

    async def _session_run(self, ws: trio_websocket.WebSocketConnection, target: _Target) -> _Failure | None:
        serializer = self._serializer_cls(max_message_bytes=self._bot.max_message_bytes)
        for message in serializer.opening_messages():
            await ws.send_message(message)
        if serializer.supports_rtvi:
            hello = serializer.encode_message(rtvi.client_ready(device_id=self._device_id))
            if hello is not None:
                await ws.send_message(hello)

        self._session += 1
        session = self._session
        now = trio.current_time()
        self._policy.on_connected(now)
        self.counters.connects_total += 1
        self._shown_url = target.shown
        self._serializer = serializer
        self._drop_outgoing()
        self._deliver(SessionStarted(session=session, url=target.shown), droppable=False)
        self._set_state(
            LinkState.CONNECTED,
            connects_total=self.counters.connects_total,
            unfixable=False,
        )
        # DEBUG only: a bot that accepts and then rejects every session (4003) must not log each one.
        # The line people need is "ready"; a lost session is logged with its reason.
        log.debug(kv(state="connected", session=session, url=target.shown, serializer=serializer.name))
        if not serializer.supports_rtvi:
            self._become_ready(session, "no RTVI in this wire format")

        end: _SessionEnd | None = None
        try:
            async with trio.open_nursery() as nursery:
                end = _SessionEnd(nursery.cancel_scope)
                if self._end_request.is_set():  # close() or reconnect_now() raced the handshake
                    nursery.start_soon(self._finish, ws, serializer, end)
                nursery.start_soon(self._reader, ws, serializer, end, session)
                nursery.start_soon(self._writer, ws, serializer, end)
                nursery.start_soon(self._end_watch, ws, serializer, end)
                if self.config.heartbeat.interval > 0:
                    nursery.start_soon(self._heartbeat, ws, end)
                if serializer.supports_rtvi:
                    nursery.start_soon(self._ready_timer, session)
        finally:
            self._serializer = None
            self._drop_outgoing()
            stable = self._policy.on_session_end(trio.current_time())
            reason = end.reason if end is not None and end.reason else "session ended"
            failure = end.failure if end is not None and end.reason else _Failure(reason)
            self._deliver(
                SessionEnded(session=session, reason=reason, failure=failure is not None), droppable=False
            )
            log.debug(kv(session=session, ended=reason, stable=stable))
        if stable:
            # A session that proved the bot healthy ends a failure streak: its loss is news.
            self._failures.clear()
            self._young_failure = None
        else:
            # A young session's end is one more failed attempt: the repeat suppressor decides.
            self._young_failure = failure.reason if failure is not None else None
        return failure

    def _become_ready(self, session: int, how: str) -> None:
        if self._session != session or self.status.state is not LinkState.CONNECTED:
            return
        self._set_state(LinkState.READY)
        now = trio.current_time()
        down = now - self._down_since if self._down_since is not None else None
        # A bot that says bot-ready and then drops every session would log "ready" per attempt: while
        # the failure streak is that very drop repeating, this line is DEBUG like the attempts.
        flapping = self._young_failure is not None and self._failures.reason == self._young_failure
        (log.debug if flapping else log.info)(
            kv(
                state="ready",
                session=session,
                url=self._shown_url,
                serializer=self._serializer_cls.name,
                via=how,
                down=f"{down:.1f}s" if down is not None else None,
            )
        )
        self._down_since = None

    async def _ready_timer(self, session: int) -> None:
        await trio.sleep(self._bot.ready_timeout)
        if self._session == session and self.status.state is LinkState.CONNECTED:
            self.counters.ready_timeouts_total += 1
            if not self._ready_timeout_logged:
                self._ready_timeout_logged = True
                how = (
                    f"no bot-ready within {self._bot.ready_timeout:g} s, going on (older bots never send it)"
                )
            else:
                how = "bot-ready timeout"
            self._become_ready(session, how)

    async def _reader(
        self, ws: trio_websocket.WebSocketConnection, serializer: Serializer, end: _SessionEnd, session: int
    ) -> None:
        try:
            while True:
                data = await ws.get_message()
                received_at = trio.current_time()
                try:
                    events = serializer.decode(data)
                except ProtocolError as e:
                    self.counters.garbage_frames_total += 1
                    held = self._garbage_log.allow(trio.current_time())
                    if held is not None:
                        more = f" (+{held} more since the last report)" if held else ""
                        log.warning(f"ignored an undecodable message from the bot: {redact(str(e))}{more}")
                    continue
                for event in events:
                    self._on_event(event, session, received_at)
        except ConnectionClosed as e:
            failure = describe_close(e.reason, max_message_bytes=self._bot.max_message_bytes)
            end.set(failure.reason, failure=failure)

    def _on_event(self, event: Event, session: int, received_at: float) -> None:
        if isinstance(event, AudioChunk):
            self.counters.received_audio_total += 1
            self.counters.received_audio_bytes_total += len(event.pcm)
            stamped = ReceivedAudio(event.pcm, event.sample_rate, event.num_channels, received_at=received_at)
            if not self._deliver(stamped, droppable=True):
                self.counters.dropped_incoming_audio_bytes_total += len(event.pcm)
            return
        self.counters.received_events_total += 1
        if type(event) is Interruption:
            event = ReceivedInterruption(received_at=received_at)
        if isinstance(event, rtvi.BotReady):
            self._become_ready(session, "bot-ready")
        elif isinstance(event, rtvi.ServerError):
            held = self._bot_error_log.allow(trio.current_time())
            if held is not None:
                log.warning(kv(bot_error=redact(event.error)[:200], fatal=event.fatal))
        self._deliver(event, droppable=False)

    async def _writer(
        self, ws: trio_websocket.WebSocketConnection, serializer: Serializer, end: _SessionEnd
    ) -> None:
        try:
            while True:
                if self._messages_out:
                    message = self._messages_out.popleft()
                    try:
                        data = serializer.encode_message(message)
                    except ProtocolError as e:
                        self.counters.dropped_messages_total += 1
                        log.warning(f"not sending a message the bot could not read: {redact(str(e))}")
                        continue
                    if data is None:
                        self.counters.dropped_messages_total += 1
                        continue
                    try:
                        await ws.send_message(data)
                    except BaseException:
                        self.counters.dropped_messages_total += 1  # taken, never delivered: counted
                        raise
                    self.counters.sent_messages_total += 1
                elif self._audio_out:
                    pcm, rate, captured_at = self._audio_out.popleft()
                    try:
                        data = serializer.encode_audio(pcm, rate)
                    except ProtocolError as e:
                        self.counters.dropped_outgoing_audio_total += 1
                        held = self._encode_log.allow(trio.current_time())
                        if held is not None:
                            log.warning(f"not sending mic audio the bot could not read: {e}")
                        continue
                    self._audio_in_send = 1
                    try:
                        await ws.send_message(data)
                    except BaseException:
                        # Taken from the queue but not delivered (the session ended mid-send): a counted drop.
                        self.counters.dropped_outgoing_audio_total += 1
                        raise
                    finally:
                        self._audio_in_send = 0
                    if captured_at is not None:
                        self.latency["capture_to_send"].record(trio.current_time() - captured_at)
                    self.counters.sent_audio_total += 1
                    self.counters.sent_audio_bytes_total += len(pcm)
                else:
                    self._out_wakeup = trio.Event()
                    await self._out_wakeup.wait()
        except ConnectionClosed as e:
            failure = describe_close(e.reason, max_message_bytes=self._bot.max_message_bytes)
            end.set(failure.reason, failure=failure)

    async def _heartbeat(self, ws: trio_websocket.WebSocketConnection, end: _SessionEnd) -> None:
        interval = self.config.heartbeat.interval
        timeout = self.config.heartbeat.timeout
        try:
            while True:
                await trio.sleep(interval)
                self.counters.pings_sent_total += 1
                with trio.move_on_after(timeout) as scope:
                    await ws.ping()
                if scope.cancelled_caught:
                    self.counters.pings_timed_out_total += 1
                    reason = f"no pong within {timeout:g} s: connection presumed dead"
                    end.set(reason, failure=_Failure(reason))
                    return
        except ConnectionClosed as e:
            failure = describe_close(e.reason, max_message_bytes=self._bot.max_message_bytes)
            end.set(failure.reason, failure=failure)

    async def _end_watch(
        self, ws: trio_websocket.WebSocketConnection, serializer: Serializer, end: _SessionEnd
    ) -> None:
        await self._end_request.wait()
        await self._finish(ws, serializer, end)

    async def _finish(
        self, ws: trio_websocket.WebSocketConnection, serializer: Serializer, end: _SessionEnd
    ) -> None:
        """End the session on purpose: goodbye messages and the close handshake, briefly."""
        reason = self._end_reason or "closing"
        end.claim(reason, failure=None)  # the bot's answering close must not read as a failure
        if self._graceful or not self._closing:
            with trio.move_on_after(CLOSE_GRACE):
                try:
                    if self._closing and serializer.supports_rtvi:
                        goodbye = serializer.encode_message(rtvi.disconnect_bot())
                        if goodbye is not None:
                            await ws.send_message(goodbye)
                    for message in serializer.closing_messages():
                        await ws.send_message(message)
                    await ws.aclose()
                except ConnectionClosed:
                    pass
        end.set(reason, failure=None)

    # --- delivery to the app -------------------------------------------------------------------------

    def _deliver(self, event: Any, *, droppable: bool) -> bool:
        """Hand `event` to the app; False when it was dropped (counted)."""
        if droppable:
            if self._backlog:
                # Events are waiting behind a full channel: this one would overtake them. Drop it.
                self.counters.dropped_incoming_total += 1
                return False
            try:
                self._send_events.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self.counters.dropped_incoming_total += 1
                return False
            return True
        if not self._backlog:
            try:
                self._send_events.send_nowait(event)
                return True
            except trio.WouldBlock:
                pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.counters.dropped_incoming_total += 1
                return False
        if len(self._backlog) >= CONTROL_BACKLOG:
            self._backlog.popleft()
            self.counters.dropped_incoming_total += 1
        self._backlog.append(event)
        self._backlog_wakeup.set()
        return True

    async def _flush_backlog(self) -> None:
        while True:
            if not self._backlog:
                self._backlog_wakeup = trio.Event()
                await self._backlog_wakeup.wait()
                continue
            event = self._backlog[0]
            try:
                await self._send_events.send(event)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.counters.dropped_incoming_total += len(self._backlog)
                self._backlog.clear()
                return
            if self._backlog and self._backlog[0] is event:
                self._backlog.popleft()

    # --- state -----------------------------------------------------------------------------------------

    def _drop_outgoing(self) -> None:
        self.counters.dropped_outgoing_audio_total += len(self._audio_out)
        self.counters.dropped_messages_total += len(self._messages_out)
        self._audio_out.clear()
        self._messages_out.clear()

    def _set_state(self, state: LinkState, **changes: Any) -> None:
        old = self.status
        try:
            since = trio.current_time()
        except RuntimeError:  # outside trio (close() before run)
            since = old.since
        changes.setdefault("retry_in", None)  # only BACKING_OFF has a delay ahead of it
        new = replace(old, state=state, since=since if state is not old.state else old.since, **changes)
        if new == old:
            return
        self.status = new
        for callback in list(self._subscribers):
            try:
                callback(new)
            except Exception:
                held = self._callback_log.allow(since)
                if held is not None:
                    log.exception("link status subscriber failed")


def _host_header(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "wss" else 80
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def _resource(url: str) -> str:
    parts = urlsplit(url)
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    return resource
