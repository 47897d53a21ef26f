"""The link's queues, as pure bookkeeping: what waits to go to the bot, and what waits for the app.

`Outbox` holds mic audio and RTVI messages on their way to the socket (messages go first: a button press
must not wait behind speech). Both are bounded; what does not fit, or is still queued when a session ends,
is dropped and counted. `Backlog` holds the events the app could not take at once, never audio: a slow
consumer loses speech, never a state change; it too is bounded, dropping (and counting) its oldest.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from voiceterm.core.linkstate import LinkCounters
from voiceterm.record import record


@record
class OutgoingAudio:
    """One mic chunk; `captured_at` (trio time its capture read returned) times its way to the socket."""

    pcm: bytes
    sample_rate: int
    captured_at: float | None = None


@record
class OutgoingMessage:
    """One RTVI message (a dict the serializer encodes)."""

    message: dict[str, Any]


class Outbox:
    """Mic audio and RTVI messages waiting for the socket, bounded, messages first."""

    def __init__(self, counters: LinkCounters, *, audio_capacity: int, message_capacity: int) -> None:
        self._counters = counters
        self.audio_capacity = audio_capacity
        self.message_capacity = message_capacity
        self._audio: deque[OutgoingAudio] = deque()
        self._messages: deque[OutgoingMessage] = deque()
        self.audio_in_send = 0  # 1 while a chunk taken from the queue is being written to the socket

    @property
    def audio_queued(self) -> int:
        return len(self._audio)

    @property
    def messages_queued(self) -> int:
        return len(self._messages)

    def put_audio(self, pcm: object, sample_rate: int, captured_at: float | None) -> bool:
        """Queue a mic chunk; False (and counted) when it is not bytes or the queue is full."""
        if not isinstance(pcm, (bytes, bytearray)) or len(self._audio) >= self.audio_capacity:
            self._counters.dropped_outgoing_audio_total += 1
            return False
        self._audio.append(OutgoingAudio(bytes(pcm), sample_rate, captured_at))
        return True

    def put_message(self, message: dict[str, Any]) -> bool:
        """Queue an RTVI message; False (and counted) when the queue is full."""
        if len(self._messages) >= self.message_capacity:
            self._counters.dropped_messages_total += 1
            return False
        self._messages.append(OutgoingMessage(message))
        return True

    def take(self) -> OutgoingMessage | OutgoingAudio | None:
        """The next item to send (a message before any audio), or None when both queues are empty."""
        if self._messages:
            return self._messages.popleft()
        if self._audio:
            return self._audio.popleft()
        return None

    def lost(self, item: OutgoingMessage | OutgoingAudio) -> None:
        """`item` was taken but never delivered (it could not be encoded, or the session ended mid-send)."""
        if isinstance(item, OutgoingAudio):
            self._counters.dropped_outgoing_audio_total += 1
        else:
            self._counters.dropped_messages_total += 1

    def sent(self, item: OutgoingMessage | OutgoingAudio) -> None:
        if isinstance(item, OutgoingAudio):
            self._counters.sent_audio_total += 1
            self._counters.sent_audio_bytes_total += len(item.pcm)
        else:
            self._counters.sent_messages_total += 1

    def drop_all(self) -> None:
        """The session is over: nothing queued for it may reach the next one (counted)."""
        self._counters.dropped_outgoing_audio_total += len(self._audio)
        self._counters.dropped_messages_total += len(self._messages)
        self._audio.clear()
        self._messages.clear()


class Backlog:
    """Non-audio events waiting for a slow app, oldest first, at most `capacity` (the oldest is dropped)."""

    def __init__(self, counters: LinkCounters, capacity: int) -> None:
        self._counters = counters
        self.capacity = capacity
        self._items: deque[Any] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def admits_audio(self) -> bool:
        """Audio may go to the app only when no event waits: it must not overtake one."""
        return not self._items

    def hold(self, event: Any) -> None:
        if len(self._items) >= self.capacity:
            self._items.popleft()
            self._counters.dropped_incoming_total += 1
        self._items.append(event)

    def head(self) -> Any:
        return self._items[0] if self._items else None

    def delivered(self, event: Any) -> None:
        """`event` (the head when the send began) reached the app; it may have been dropped meanwhile."""
        if self._items and self._items[0] is event:
            self._items.popleft()

    def abandon(self) -> None:
        """The app stopped reading: what waits is dropped (counted)."""
        self._counters.dropped_incoming_total += len(self._items)
        self._items.clear()
