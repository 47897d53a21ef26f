"""The serializer interface: how one wire format turns mic audio and RTVI messages into WebSocket
messages, and WebSocket messages from the bot into typed events. Pure: bytes and values only.

The shared validation lives here, so every format refuses the same bad input with the same words.
"""

from __future__ import annotations

import abc
import json
from typing import Any, ClassVar

from voiceterm.protocol.errors import ProtocolError
from voiceterm.protocol.events import Event

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAX_SAMPLE_RATE",
    "Event",
    "Serializer",
    "decode_json",
    "encode_json",
]

# websockets (pipecat's default server) caps messages at 1 MiB.
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
# Sanity bound for a sample rate in either direction; also keeps it inside protobuf's uint32.
MAX_SAMPLE_RATE = 384_000


class Serializer(abc.ABC):
    """One wire format. An instance serves one WebSocket session and may keep per-session state
    (Twilio's sequence numbers): ``opening_messages()`` starts a session afresh."""

    name: ClassVar[str]
    text_frames: ClassVar[bool]  # True: every WS message is text (str); False: binary (bytes)
    supports_rtvi: ClassVar[bool]
    # The rate mic audio MUST have (the server does not resample); None = whatever the config says.
    input_sample_rate: int | None = None

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
        ``ProtocolError``: malformed content, the wrong WebSocket frame type, or an oversize message."""

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


def decode_json(text: str | bytes, what: str) -> object:
    """The JSON value in ``text``, or ``ProtocolError`` (bad syntax, too deep, huge integers)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        # ValueError covers JSONDecodeError, bad UTF-8 and int digit limits; never echo the payload.
        raise ProtocolError(f"{what}: invalid JSON ({type(e).__name__})") from None
