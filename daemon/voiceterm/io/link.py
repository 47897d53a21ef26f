"""The bot link: the trio shell that performs what the link's state machine (core/linkmachine.py) decides.

`Link.run` feeds the machine what happens (a connection opened or failed, a message, a pong, a timer, a
request from the app) and performs the actions it answers: open a connection, publish a status, write a
log line, ping, say goodbye, tear a session down. Decoded bot events go to the app through a bounded
channel that the link never waits on (core/linkqueues.py: audio that does not fit is dropped and counted;
other events wait in a small backlog). Mic audio and RTVI messages are handed in without blocking.
How a connection is opened lives in io/wsopen.py, and why one failed in io/linkfailures.py.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import trio

from voiceterm.config import Config
from voiceterm.core import linksignals as sig
from voiceterm.core.latency import LatencyRecorder
from voiceterm.core.linkevents import ReceivedAudio, ReceivedInterruption, SessionEnded, SessionStarted
from voiceterm.core.linkmachine import LinkMachine, LinkSettings, Phase
from voiceterm.core.linkqueues import Outbox
from voiceterm.core.linkstate import LinkCounters, LinkStatus
from voiceterm.core.lograte import Throttle
from voiceterm.core.reconnect import DEFAULT_STABLE_AFTER, ReconnectPolicy
from voiceterm.errors import first_real
from voiceterm.io.linkfailures import describe_attempt_error, describe_close
from voiceterm.io.linkpipes import Inbound, Outbound
from voiceterm.io.wsopen import Connector, StreamOpener, Target
from voiceterm.logs import escape, kv
from voiceterm.masking import mask_url
from voiceterm.protocol import rtvi
from voiceterm.protocol.base import Serializer
from voiceterm.protocol.errors import ProtocolError
from voiceterm.protocol.events import AudioChunk, Event, Interruption
from voiceterm.protocol.registry import get_serializer
from voiceterm.record import record

if TYPE_CHECKING:  # trio-websocket is imported by the first connect attempt, after READY (io/wsopen.py)
    from trio_websocket import WebSocketConnection

log = logging.getLogger("voiceterm.link")

CONTROL_BACKLOG = 64  # non-audio events held for a slow consumer before the oldest is dropped
MESSAGE_QUEUE = 16  # outgoing RTVI messages waiting for the socket
CLOSE_DEADLINE = 1.0  # close() returns within this, whatever the peer does


@record
class _Session:
    number: int
    ws: WebSocketConnection
    serializer: Serializer
    nursery: trio.Nursery


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
        open_stream: StreamOpener | None = None,
    ) -> None:
        self.config = config
        self._bot = config.bot
        self._serializer_cls = serializer_cls or get_serializer(config.bot.serializer)
        self._device_id = device_id or config.device_id
        self.counters = LinkCounters()
        policy = ReconnectPolicy.from_config(config.reconnect, rng=rng, stable_after=stable_after)
        shown = mask_url(self._bot.endpoint or self._bot.url)
        self._machine = LinkMachine(
            LinkSettings.from_config(config, serializer=self._serializer_cls.name, url=shown),
            policy,
            self.counters,
        )
        self._connector = Connector(self._bot, serializer=self._serializer_cls.name, open_stream=open_stream)
        self._inbound = Inbound(self.counters, capacity=events_capacity, backlog=CONTROL_BACKLOG)
        self.events = self._inbound.receive
        # capture_to_send: a mic chunk's capture (read returned) to its WebSocket send having returned.
        self.latency = {"capture_to_send": LatencyRecorder()}
        outbox = Outbox(self.counters, audio_capacity=outgoing_audio_capacity, message_capacity=MESSAGE_QUEUE)
        self._outbound = Outbound(outbox, self.latency["capture_to_send"])
        self._subscribers: list[Callable[[LinkStatus], None]] = []
        self._session: _Session | None = None
        self._session_open = False  # its nursery still takes tasks (False once it has closed)
        self._attempt_scope: trio.CancelScope | None = None
        self._timer_scope: trio.CancelScope | None = None
        self._run_scope: trio.CancelScope | None = None
        self._connect_due = False
        self._nudge = trio.Event()
        self._pending: deque[sig.Event] = deque()
        self._feeding = False
        self._running = False
        self._stopped = trio.Event()
        self._logs = {"garbage": Throttle(60.0), "callback": Throttle(60.0)}
        self._perform_by_type: dict[type, Callable[[Any], None]] = {
            sig.Publish: self._publish,
            sig.Note: self._log_note,
            sig.Deliver: lambda a: self._inbound.deliver(a.event, droppable=False),
            sig.Connect: self._connect,
            sig.CancelAttempt: self._cancel_attempt,
            sig.SendPing: lambda a: self._in_session(self._ping),
            sig.EndSession: lambda a: self._in_session(self._finish, a.goodbye),
            sig.AbortSession: self._abort_session,
        }

    # --- the app's side -----------------------------------------------------------------------------

    @property
    def status(self) -> LinkStatus:
        return self._machine.status

    @property
    def policy(self) -> ReconnectPolicy:
        return self._machine.policy

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: take the new [reconnect] and [heartbeat] settings. The attempt count carries over; the
        next delay uses the new values, and so do the pings of the next session. [bot] changes need a
        restart (the app names them)."""
        self.config = replace(self.config, reconnect=config.reconnect, heartbeat=config.heartbeat)
        settings = LinkSettings.from_config(
            self.config, serializer=self._serializer_cls.name, url=self._machine.url
        )
        self._machine.reconfigure(settings, self._machine.policy.reconfigured(config.reconnect))

    def subscribe(self, callback: Callable[[LinkStatus], None]) -> None:
        """Call `callback(status)` synchronously, in the link task, after every status change."""
        self._subscribers.append(callback)

    def handle_audio(self, handler: Callable[[Any], None]) -> None:
        """Let the link call `handler(audio)` itself for bot audio that finds the reader of `events` idle,
        instead of waking it: `handler` must be what that reader does with audio, and must not raise."""
        self._inbound.audio_handler = handler

    def send_audio(self, pcm: bytes, sample_rate: int, captured_at: float | None = None) -> bool:
        """Queue one mic chunk. False (and counted) when the link is down or the queue is full.

        `captured_at` (trio time the capture read returned) times the chunk's way to the socket.
        """
        if not self._machine.is_up:
            self.counters.dropped_outgoing_audio_total += 1
            return False
        return self._outbound.wake(self._outbound.outbox.put_audio(pcm, sample_rate, captured_at))

    def send_message(self, message: dict[str, Any]) -> bool:
        """Queue one RTVI message ahead of any queued audio. False (and counted) when it cannot go."""
        # A format without RTVI may still carry some messages (Twilio: dtmf): the serializer says.
        if not self._machine.is_up or not self._serializer_cls.carries(message):
            self.counters.dropped_messages_total += 1
            return False
        return self._outbound.wake(self._outbound.outbox.put_message(message))

    def wake(self) -> None:
        """Leave FAILED (a button press): restart the attempt budget and try at once."""
        self._feed(sig.Wake(trio.current_time()))

    def reconnect_now(self) -> None:
        """End the current session (if any) and connect again at once, with a fresh attempt budget."""
        self._feed(sig.ReconnectNow(trio.current_time()))

    async def close(self, *, graceful: bool = True) -> None:
        """Stop the link: say goodbye to the bot when graceful (disconnect-bot), close the socket.

        Returns within about a second whatever the peer does.
        """
        self._feed(sig.Close(trio.current_time(), graceful))
        if not self._running:
            self._inbound.close()
            return
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
            "session": self._machine.session,
            "since": status.since,
            "url": self._machine.url,
            "serializer": self._serializer_cls.name,
            "outgoing_audio_queued": self._outbound.outbox.audio_queued,
            "outgoing_audio_in_send": self._outbound.outbox.audio_in_send,
            "outgoing_messages_queued": self._outbound.outbox.messages_queued,
            "incoming_backlog": len(self._inbound.backlog),
            **self.counters.as_dict(),
        }

    # --- the machine --------------------------------------------------------------------------------

    def _feed(self, event: sig.Event) -> None:
        """Hand `event` to the machine and perform its actions. Events fed while actions run (a subscriber
        that calls wake) are handled after, in order."""
        self._pending.append(event)
        if self._feeding:
            return
        self._feeding = True
        try:
            while self._pending:
                for action in self._machine.handle(self._pending.popleft()):
                    self._perform_by_type[type(action)](action)
        finally:
            self._feeding = False
        if self._timer_scope is not None:
            self._timer_scope.deadline = self._machine.deadline
        self._nudge.set()

    def _publish(self, action: sig.Publish) -> None:
        for callback in list(self._subscribers):
            try:
                callback(action.status)
            except Exception:
                if self._logs["callback"].allow(action.status.since) is not None:
                    log.exception("link status subscriber failed")

    @staticmethod
    def _log_note(note: sig.Note) -> None:
        log.log(note.level, note.prefix + kv(**note.fields) + note.suffix)

    def _connect(self, _: sig.Connect) -> None:
        self._connect_due = True

    def _cancel_attempt(self, _: sig.CancelAttempt) -> None:
        if self._attempt_scope is not None:
            self._attempt_scope.cancel()

    def _abort_session(self, _: sig.AbortSession) -> None:
        if self._session is not None:
            self._session.nursery.cancel_scope.cancel()

    def _in_session(self, work: Callable[..., Awaitable[None]], *args: Any) -> None:
        if self._session is not None and self._session_open:
            self._session.nursery.start_soon(self._guarded, self._session, work, *args)

    # --- the tasks ------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the link up until `close`. Reports started at once: the bot may well be down at boot."""
        if self._running or self._stopped.is_set():
            raise RuntimeError("Link.run() can only be called once")
        self._running = True
        try:
            with trio.CancelScope() as self._run_scope:
                task_status.started()
                async with self._connector.client(), trio.open_nursery() as nursery:
                    nursery.start_soon(self._inbound.flush)
                    nursery.start_soon(self._timer)
                    self._feed(sig.Start(trio.current_time()))
                    while self._machine.phase is not Phase.CLOSED:
                        if self._connect_due:
                            self._connect_due = False
                            await self._attempt()
                        else:
                            self._nudge = trio.Event()
                            await self._nudge.wait()
                    nursery.cancel_scope.cancel()
        finally:
            self._feed(sig.Halt(trio.current_time()))
            self._outbound.outbox.drop_all()
            self._inbound.close()
            self._running = False
            self._stopped.set()

    async def _timer(self) -> None:
        """Feeds the machine a Tick whenever its deadline comes (`_feed` moves the deadline)."""
        while True:
            with trio.CancelScope(deadline=self._machine.deadline) as self._timer_scope:
                await trio.sleep_forever()
            self._timer_scope = None
            self._feed(sig.Tick(trio.current_time()))

    async def _attempt(self) -> None:
        """One attempt: target, stream, upgrade, opening messages, and then the session it opens, if any."""
        stream: trio.abc.Stream | None = None
        target: Target | None = None
        self._session = None
        self._session_open = True
        try:
            with trio.CancelScope() as self._attempt_scope:
                target = await self._connector.target(self.counters)
                stream = await self._connector.stream(target.url)
                async with trio.open_nursery() as conn:  # trio-websocket's reader task lives here
                    ws = await self._connector.upgrade(conn, stream, target.url)
                    serializer = self._serializer_cls(max_message_bytes=self._bot.max_message_bytes)
                    for message in serializer.opening_messages():
                        await ws.send_message(message)
                    if serializer.supports_rtvi:
                        await ws.send_message(
                            serializer.encode_message(rtvi.client_ready(device_id=self._device_id))
                        )
                    try:
                        async with trio.open_nursery() as nursery:
                            self._session = _Session(self._machine.session + 1, ws, serializer, nursery)
                            self._feed(
                                sig.Opened(trio.current_time(), target.shown, serializer.supports_rtvi)
                            )
                            nursery.start_soon(self._guarded, self._session, self._reader)
                            nursery.start_soon(self._guarded, self._session, self._outbound.write)
                    finally:
                        # Its nursery takes no more work: a close() during the teardown below has
                        # nothing left to say goodbye on.
                        self._session_open = False
                    conn.cancel_scope.cancel()
        except BaseException as exc:
            real = first_real(exc, skip=trio.Cancelled)
            if real is None or not isinstance(real, Exception):
                raise
            failure = describe_attempt_error(real, token_sent=bool(target and target.token_sent))
            if failure.reason.startswith("unexpected"):
                log.debug("unexpected error while connecting", exc_info=real)
            now = trio.current_time()
            opened = self._session
            self._feed(
                sig.AttemptFailed(now, failure) if opened is None else sig.Closed(now, opened.number, failure)
            )
        finally:
            self._attempt_scope = None
            if stream is not None:
                # Forcefully: a graceful TLS close would wait on a peer that may be a black hole.
                await trio.aclose_forcefully(stream)
            if self._session is not None:
                self._outbound.outbox.drop_all()
                self._feed(sig.SessionOver(trio.current_time(), self._session.number))
                self._session = None

    async def _guarded(self, session: _Session, work: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Runs a session task. The one place a closed WebSocket is turned into what the machine hears."""
        from trio_websocket import ConnectionClosed  # loaded: a session has a WebSocket

        try:
            await work(session, *args)
        except ConnectionClosed as e:
            failure = describe_close(e.reason, max_message_bytes=self._bot.max_message_bytes)
            self._feed(sig.Closed(trio.current_time(), session.number, failure))

    async def _reader(self, session: _Session) -> None:
        while True:
            data = await session.ws.get_message()
            received_at = trio.current_time()
            try:
                events = session.serializer.decode(data)
            except ProtocolError as e:
                self.counters.garbage_frames_total += 1
                held = self._logs["garbage"].allow(received_at)
                if held is not None:
                    more = f" (+{held} more since the last report)" if held else ""
                    log.warning(f"ignored an undecodable message from the bot: {escape(str(e))}{more}")
                continue
            for event in events:
                self._on_event(event, session.number, received_at)

    def _on_event(self, event: Event, session: int, received_at: float) -> None:
        up = self._machine.is_up  # once the session ends, the app has been told: nothing more of it
        if isinstance(event, AudioChunk):
            self.counters.received_audio_total += 1
            self.counters.received_audio_bytes_total += len(event.pcm)
            stamped = ReceivedAudio(event.pcm, event.sample_rate, event.num_channels, received_at=received_at)
            if not (up and self._inbound.deliver(stamped, droppable=True)):
                self.counters.dropped_incoming_total += not up
                self.counters.dropped_incoming_audio_bytes_total += len(event.pcm)
            return
        self.counters.received_events_total += 1
        if not up:
            self.counters.dropped_incoming_total += 1
            return
        from voiceterm.protocol import rtvi_events  # loaded: the serializer parsed this event with it

        if type(event) is Interruption:
            event = ReceivedInterruption(received_at=received_at)
        elif isinstance(event, rtvi_events.BotReady):
            self._feed(sig.BotReadySeen(received_at, session, event.version))  # READY before the event
        self._inbound.deliver(event, droppable=False)
        if isinstance(
            event, rtvi_events.ServerError
        ):  # after: a fatal one ends the session, and nothing follows that
            self._feed(sig.BotErrorSeen(received_at, session, event.error, event.fatal))

    async def _ping(self, session: _Session) -> None:
        await session.ws.ping()
        self._feed(sig.Pong(trio.current_time(), session.number))

    async def _finish(self, session: _Session, goodbye: bool) -> None:
        """End the session on purpose: goodbye messages and the close handshake (the machine times it)."""
        if goodbye:
            message = session.serializer.encode_message(rtvi.disconnect_bot())
            if message is not None:
                await session.ws.send_message(message)
        for message in session.serializer.closing_messages():
            await session.ws.send_message(message)
        await session.ws.aclose()
        self._feed(sig.Closed(trio.current_time(), session.number, None))


__all__ = ["Link", "LinkCounters", "ReceivedAudio", "ReceivedInterruption", "SessionEnded", "SessionStarted"]
