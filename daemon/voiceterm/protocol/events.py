"""Typed events decoded from the bot's WebSocket messages: audio, interruptions, text, RTVI messages.

All events are frozen, slotted dataclasses. The base of all RTVI events lives here so that ``Event``
can name it; its typed subclasses (``BotReady``, ``BotInterrupted`` ...) live in ``rtvi_events.py``.
"""

from __future__ import annotations

from typing import Union

from voiceterm.record import record


@record
class AudioChunk:
    """Bot speech: signed 16-bit little-endian PCM, interleaved when ``num_channels`` > 1."""

    pcm: bytes
    sample_rate: int
    num_channels: int = 1

    @property
    def n_frames(self) -> int:
        """Samples per channel in this chunk."""
        return len(self.pcm) // (2 * self.num_channels)

    @property
    def duration(self) -> float:
        """Length of the chunk in seconds."""
        return self.n_frames / self.sample_rate


@record
class Interruption:
    """Drop all queued bot audio now: a protobuf ``interruption`` frame or a Twilio ``clear``."""


@record
class TextFrameEvent:
    """A protobuf ``text`` frame (pipecat TextFrame)."""

    text: str


@record
class TranscriptionEvent:
    """A protobuf ``transcription`` frame (pipecat TranscriptionFrame)."""

    text: str
    user_id: str
    timestamp: str


@record
class TransportMessage:
    """A JSON transport message that is not RTVI (its ``label`` is not ``"rtvi-ai"``): app data."""

    data: object


@record
class RTVIEvent:
    """An RTVI server message. Unknown types come back as this base class, known ones as subclasses.

    ``data`` is the message's raw ``data`` value (often absent: None); ``id`` is present on replies
    to a client message (``bot-ready``, ``error-response``, ``server-response``).
    """

    type: str
    id: str | None = None
    data: object = None


Event = Union[AudioChunk, Interruption, TextFrameEvent, TranscriptionEvent, TransportMessage, RTVIEvent]
"""Everything ``Serializer.decode`` can return (RTVI events as ``RTVIEvent`` or a subclass)."""
