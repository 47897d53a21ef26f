"""The serializer interface: how one wire format turns mic audio and RTVI messages into WebSocket
messages, and WebSocket messages from the bot into typed events. Pure: bytes and values only.

The shared validation lives here, so every format refuses the same bad input with the same words. It is
also where the bot's bytes are contained, for every format including plugins: each subclass's `decode` is
wrapped so that it raises nothing but ProtocolError whatever it is fed (a bug or a resource error caused by
content included), and the audio it returns is checked against the formats a voice bot can mean
(`check_bot_audio`). The link counts and drops what fails, and the session goes on.
"""

from __future__ import annotations

import abc
import functools
import json
from collections.abc import Callable
from typing import Any, ClassVar

from voiceterm import safejson
from voiceterm.protocol.errors import ProtocolError
from voiceterm.protocol.events import AudioChunk, Event

__all__ = [
    "BOT_AUDIO_CHANNELS",
    "BOT_AUDIO_RATES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_SAMPLE_RATE",
    "Event",
    "Serializer",
    "check_bot_audio",
    "decode_json",
    "encode_json",
]

# websockets (pipecat's default server) caps messages at 1 MiB.
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
# Sanity bound for the mic's sample rate; also keeps it inside protobuf's uint32.
MAX_SAMPLE_RATE = 384_000
# Bot audio the daemon plays: the rates a voice bot can mean (telephone 8 kHz up to 48 kHz studio; pipecat's
# TTS services use 8 000 to 48 000 Hz) and mono or stereo (stereo is mixed down). Anything else is garbage,
# not speech: a frame at 1 Hz would make the resampler turn 64 KiB into gigabytes. Resampling from 8 kHz to
# a 48 kHz speaker is the largest ratio, 6.
BOT_AUDIO_RATES = range(8000, 48001)
BOT_AUDIO_CHANNELS = range(1, 3)
MAX_JSON_DEPTH = safejson.MAX_DEPTH  # pipecat's messages nest 3 or 4 levels


class Serializer(abc.ABC):
    """One wire format. An instance serves one WebSocket session and may keep per-session state
    (Twilio's sequence numbers): ``opening_messages()`` starts a session afresh."""

    name: ClassVar[str]
    text_frames: ClassVar[bool]  # True: every WS message is text (str); False: binary (bytes)
    supports_rtvi: ClassVar[bool]
    # The rate mic audio MUST have (the server does not resample); None = whatever the config says.
    input_sample_rate: int | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        decode = cls.__dict__.get("decode")
        if decode is not None and not getattr(decode, "_contained", False):
            cls.decode = _contained(decode)  # type: ignore[method-assign]

    def __init__(self, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, **options: object) -> None:
        if options:
            names = ", ".join(sorted(options))
            raise TypeError(f"serializer {self.name!r} has no option(s) {names}")
        if (
            isinstance(max_message_bytes, bool)
            or not isinstance(max_message_bytes, int)
            or max_message_bytes < 64
        ):
            raise ValueError(f"max_message_bytes must be an integer >= 64, got {max_message_bytes!r}")
        self.max_message_bytes = max_message_bytes

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} max_message_bytes={self.max_message_bytes}>"

    # -- outgoing ---------------------------------------------------------------------------------

    def opening_messages(self) -> list[bytes | str]:
        """Messages to send right after the socket opens, before anything else."""
        return []

    @classmethod
    def carries(cls, message: dict[str, Any]) -> bool:
        """Whether `encode_message` sends this message: every RTVI message where the format has RTVI; a
        format without it may still carry a few (Twilio: dtmf). The link asks before it queues one."""
        return cls.supports_rtvi

    @abc.abstractmethod
    def encode_audio(self, pcm: bytes, sample_rate: int, num_channels: int = 1) -> bytes | str:
        """One mic chunk (PCM16 LE mono) as one WebSocket message; ``ProtocolError`` on bad input."""

    @abc.abstractmethod
    def encode_message(self, message: dict[str, Any]) -> bytes | str | None:
        """One RTVI (or app) message as one WebSocket message; None when the format has no message
        channel. ``ProtocolError`` when the message cannot be sent as valid JSON."""

    def closing_messages(self) -> list[bytes | str]:
        """Messages to send just before closing the socket on purpose."""
        return []

    # -- incoming ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def decode(self, data: bytes | str) -> list[Event]:
        """All events in one WebSocket message (often one, [] for cases to ignore). Raises only
        ``ProtocolError``: malformed content, the wrong WebSocket frame type, an oversize message, or audio
        in a format no voice bot means. (Subclasses' implementations are wrapped to guarantee it.)"""

    # -- shared validation ------------------------------------------------------------------------

    def _check_audio(self, pcm: object, sample_rate: object, num_channels: object) -> bytes:
        """The chunk as bytes, or ``ProtocolError`` naming what is wrong with it."""
        if not isinstance(pcm, (bytes, bytearray, memoryview)):
            raise ProtocolError(f"{self.name}: audio must be bytes, not {type(pcm).__name__}")
        pcm = bytes(pcm) if not isinstance(pcm, bytes) else pcm
        if isinstance(num_channels, bool) or num_channels != 1:
            raise ProtocolError(
                f"{self.name}: only mono audio can be sent (got num_channels={num_channels!r})"
            )
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int):
            raise ProtocolError(
                f"{self.name}: sample_rate must be an integer, not {type(sample_rate).__name__}"
            )
        if not 0 < sample_rate <= MAX_SAMPLE_RATE:
            raise ProtocolError(
                f"{self.name}: sample_rate {sample_rate} is out of range (1..{MAX_SAMPLE_RATE} Hz)"
            )
        if self.input_sample_rate is not None and sample_rate != self.input_sample_rate:
            raise ProtocolError(
                f"{self.name}: mic audio must be {self.input_sample_rate} Hz, got {sample_rate} Hz; resample first"
            )
        if not pcm:
            raise ProtocolError(f"{self.name}: empty audio chunk")
        if len(pcm) % 2:
            raise ProtocolError(
                f"{self.name}: audio has an odd byte count ({len(pcm)}); send whole 16-bit samples"
            )
        return pcm

    def _check_outgoing_size(self, message: bytes | str, what: str) -> None:
        size = len(message) if isinstance(message, bytes) else _utf8_len(message)
        if size > self.max_message_bytes:
            raise ProtocolError(
                f"{self.name}: {what} encodes to {size} bytes, over max_message_bytes={self.max_message_bytes}; "
                "send smaller pieces"
            )

    def _check_incoming(self, data: object) -> bytes | str:
        """The message if its WebSocket frame type and size are right, else ``ProtocolError``."""
        if self.text_frames:
            if not isinstance(data, str):
                raise ProtocolError(f"{self.name}: expected a text message, got {type(data).__name__}")
            size = len(data) if len(data) * 4 <= self.max_message_bytes else _utf8_len(data)
        else:
            if isinstance(data, (bytearray, memoryview)):
                data = bytes(data)
            if not isinstance(data, bytes):
                raise ProtocolError(f"{self.name}: expected a binary message, got {type(data).__name__}")
            size = len(data)
        if size > self.max_message_bytes:
            raise ProtocolError(
                f"{self.name}: incoming message of {size} bytes is over max_message_bytes={self.max_message_bytes}"
            )
        return data


def _utf8_len(text: str) -> int:
    # surrogatepass: a str holding lone surrogates still has a well-defined size for the limit check.
    return len(text.encode("utf-8", "surrogatepass"))


def encode_json(message: object, what: str) -> str:
    """Compact JSON text for one transport message, or ``ProtocolError`` if it is not plain JSON."""
    try:
        # allow_nan=False: NaN/Infinity are not JSON and a browser-side peer would choke on them.
        return json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as e:
        raise ProtocolError(f"{what}: not serializable as JSON ({type(e).__name__}: {e})") from None


def decode_json(text: str | bytes, what: str, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> object:
    """The JSON value in ``text``, or ``ProtocolError`` (bad syntax, over ``max_bytes``, nested deeper
    than MAX_JSON_DEPTH, huge integers). Linear in the size, whatever the content."""
    try:
        return safejson.loads(text, max_bytes=max_bytes, max_depth=MAX_JSON_DEPTH)
    except safejson.JSONRejected as e:
        raise ProtocolError(f"{what}: {e}") from None


def check_bot_audio(rate: object, channels: object, n_bytes: int, who: str) -> None:
    """``ProtocolError`` unless bot audio of this format is one a voice bot can mean (BOT_AUDIO_RATES,
    BOT_AUDIO_CHANNELS) in whole 16-bit samples for every channel."""
    if isinstance(rate, bool) or not isinstance(rate, int) or rate not in BOT_AUDIO_RATES:
        raise ProtocolError(
            f"{who}: audio frame with sample_rate {rate!r} (plays {BOT_AUDIO_RATES.start}.."
            f"{BOT_AUDIO_RATES.stop - 1} Hz only)"
        )
    if isinstance(channels, bool) or not isinstance(channels, int) or channels not in BOT_AUDIO_CHANNELS:
        raise ProtocolError(f"{who}: audio frame with num_channels {channels!r} (plays mono or stereo only)")
    if n_bytes % (2 * channels):
        raise ProtocolError(
            f"{who}: audio frame of {n_bytes} bytes is not whole 16-bit samples for {channels} channel(s)"
        )


def _contained(decode: Callable[[Serializer, bytes | str], list[Event]]) -> Any:
    """``decode`` made to raise nothing but ProtocolError, and to return only audio a voice bot can mean."""

    @functools.wraps(decode)
    def contained(self: Serializer, data: bytes | str) -> list[Event]:
        try:
            events = decode(self, data)
            for event in events:
                if isinstance(event, AudioChunk):
                    check_bot_audio(event.sample_rate, event.num_channels, len(event.pcm), self.name)
            return events
        except ProtocolError:
            raise
        except Exception as e:  # RecursionError and MemoryError included: content must not end the session
            raise ProtocolError(f"{self.name}: undecodable message ({type(e).__name__})") from None

    contained._contained = True  # type: ignore[attr-defined]
    return contained
