"""What the link delivers to the app on `Link.events` besides the bot's own decoded events: a session
starting and ending, and bot audio and interruptions stamped with when their message arrived."""

from __future__ import annotations

from voiceterm.protocol.events import AudioChunk, Interruption
from voiceterm.record import record


@record
class SessionStarted:
    """A new WebSocket session (a brand-new bot session) is open: flush playback, forget turn state."""

    session: int
    url: str  # masked: no token


@record
class SessionEnded:
    """The session is over; `reason` is one line for a person (never holds a secret)."""

    session: int
    reason: str
    failure: bool  # False when it ended on purpose (close, reconnect_now)


@record
class ReceivedAudio(AudioChunk):
    """Bot audio as the link delivers it: an `AudioChunk` stamped with when its message arrived
    (trio.current_time() right after the WebSocket read), so the speaker can measure its own latency."""

    received_at: float = 0.0


@record
class ReceivedInterruption(Interruption):
    """A protocol interruption, stamped like `ReceivedAudio`: the playback flush it causes is timed from it."""

    received_at: float = 0.0
