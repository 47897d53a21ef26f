"""The link's two pipes, the trio half of core/linkqueues.py: `Inbound` hands the bot's events to the app
through a bounded channel the link never waits on, and `Outbound` writes queued mic audio and RTVI
messages to the session's socket.

Inbound: audio that does not fit is dropped and counted; any other event waits in the backlog (bounded)
and a flusher task delivers it in order, so a slow app loses speech, never a state change. Audio that
finds the app idle (parked on the channel, nothing queued before it) goes to the app's own handler right
away, in the link's task: the same order, one task switch a chunk less. Outbound: a
message goes before any audio; what cannot be encoded is dropped, counted and logged (audio at most once
a minute); a chunk taken but not written when the session ends counts as dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from voiceterm.core.latency import LatencyRecorder
from voiceterm.core.linkqueues import Backlog, Outbox, OutgoingAudio
from voiceterm.core.linkstate import LinkCounters
from voiceterm.core.lograte import Throttle
from voiceterm.logs import escape
from voiceterm.protocol.base import Serializer
from voiceterm.protocol.errors import ProtocolError

if TYPE_CHECKING:
    from trio_websocket import WebSocketConnection

log = logging.getLogger("voiceterm.link")


class Inbound:
    """Events for the app: `receive` is what `Link.events` is; run `flush` for the life of the link."""

    def __init__(self, counters: LinkCounters, *, capacity: int, backlog: int) -> None:
        self._counters = counters
        self._send, self.receive = trio.open_memory_channel[Any](capacity)
        self.backlog = Backlog(counters, backlog)
        self._wakeup = trio.Event()
        # The app's handler for audio, synchronous and never raising; None: audio goes through the channel.
        self.audio_handler: Callable[[Any], None] | None = None

    def deliver(self, event: Any, *, droppable: bool) -> bool:
        """Hand `event` to the app; False when it was dropped (counted). `droppable` events are audio."""
        if self.backlog.admits_audio():
            if droppable and self.audio_handler is not None and self._app_idle():
                self.audio_handler(event)
                return True
            try:
                self._send.send_nowait(event)
                return True
            except trio.WouldBlock:
                pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._counters.dropped_incoming_total += 1
                return False
        if droppable:  # the channel is full, or events wait that audio must not overtake
            self._counters.dropped_incoming_total += 1
            return False
        self.backlog.hold(event)
        self._wakeup.set()
        return True

    def _app_idle(self) -> bool:
        """The app waits on the channel with nothing before it: every event sent so far has been handled
        (the app's handlers do not await), so handling audio here keeps the order the channel would."""
        stats = self._send.statistics()
        return stats.tasks_waiting_receive > 0 and stats.current_buffer_used == 0

    async def flush(self) -> None:
        while True:
            event = self.backlog.head()
            if event is None:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
                continue
            try:
                await self._send.send(event)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.backlog.abandon()
                return
            self.backlog.delivered(event)

    def close(self) -> None:
        self._send.close()


class Outbound:
    """Mic audio and messages for the bot: put them in `outbox`, call `wake`, run `write` per session."""

    def __init__(self, outbox: Outbox, latency: LatencyRecorder) -> None:
        self.outbox = outbox
        self._latency = latency  # a chunk's capture to its send having returned
        self._wakeup = trio.Event()
        self._encode_log = Throttle(60.0)

    def wake(self, queued: bool) -> bool:
        if queued:
            self._wakeup.set()
        return queued

    async def write(self, session: Any) -> None:
        """Write for the life of `session` (its `ws` and its `serializer`)."""
        ws: WebSocketConnection = session.ws
        serializer: Serializer = session.serializer
        outbox = self.outbox
        while True:
            item = outbox.take()
            if item is None:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
                continue
            audio = isinstance(item, OutgoingAudio)
            try:
                if audio:
                    data = serializer.encode_audio(item.pcm, item.sample_rate)
                else:
                    data = serializer.encode_message(item.message)
            except ProtocolError as e:
                outbox.lost(item)
                if not audio or self._encode_log.allow(trio.current_time()) is not None:
                    what = "mic audio" if audio else "a message"
                    log.warning(f"not sending {what} the bot could not read: {escape(str(e))}")
                continue
            if data is None:
                outbox.lost(item)
                continue
            outbox.audio_in_send = int(audio)
            try:
                await ws.send_message(data)
            except BaseException:
                outbox.lost(item)  # taken, never delivered: counted
                raise
            finally:
                outbox.audio_in_send = 0
            outbox.sent(item)
            if audio and item.captured_at is not None:
                self._latency.record(trio.current_time() - item.captured_at)
