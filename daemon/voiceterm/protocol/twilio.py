"""Twilio Media Streams framing: the client poses as a Twilio phone call (JSON text messages carrying
base64 G.711 μ-law at 8 kHz), for bots built with pipecat's ``TwilioFrameSerializer``.

No RTVI travels here; the bot's ``clear`` event is the interruption. The call's identifiers and its
``customParameters`` (what pipecat's runner hands the bot as ``call_data``) come from ``[twilio]``
(`TwilioSerializer.bound`); keypad presses go out as Twilio ``dtmf`` events, one per key, which pipecat's
serializer turns into ``InputDTMFFrame``.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from voiceterm.protocol.base import Serializer, decode_json, encode_json
from voiceterm.protocol.errors import ProtocolError
from voiceterm.protocol.events import AudioChunk, Event, Interruption, TransportMessage
from voiceterm.protocol.mulaw import mulaw_decode, mulaw_encode

__all__ = ["TWILIO_SAMPLE_RATE", "TwilioSerializer"]

TWILIO_SAMPLE_RATE = 8000
DTMF_KEYS = frozenset("0123456789*#")


def _sid(prefix: str) -> str:
    # Twilio SIDs: a two-letter prefix and 32 hex digits.
    return prefix + uuid.uuid4().hex


def _check_sid(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or not value.isprintable() or len(value) > 64:
        raise ValueError(f"twilio: {what} must be a non-empty printable string of at most 64 characters")
    return value


class TwilioSerializer(Serializer):
    """JSON text messages in Twilio's Media Streams format. One instance serves one call at a time:
    ``opening_messages()`` starts a new call's numbering."""

    name: ClassVar[str] = "twilio"
    text_frames: ClassVar[bool] = True
    supports_rtvi: ClassVar[bool] = False
    input_sample_rate: int | None = TWILIO_SAMPLE_RATE

    def __init__(
        self,
        *,
        max_message_bytes: int = 1 << 20,
        stream_sid: str | None = None,
        call_sid: str | None = None,
        account_sid: str | None = None,
        custom_parameters: Mapping[str, str] | None = None,
        **options: object,
    ) -> None:
        super().__init__(max_message_bytes=max_message_bytes, **options)
        self.stream_sid = _check_sid(stream_sid, "stream_sid") if stream_sid is not None else _sid("MZ")
        self.call_sid = _check_sid(call_sid, "call_sid") if call_sid is not None else _sid("CA")
        self.account_sid = _check_sid(account_sid, "account_sid") if account_sid is not None else _sid("AC")
        params = dict(custom_parameters or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
            raise ValueError("twilio: custom_parameters must map strings to strings")
        self.custom_parameters = params
        self._sequence = 0  # Twilio numbers every message after "connected", from 1
        self._chunk = 0  # media chunks sent, from 1
        self._samples_sent = 0  # for media.timestamp (ms since the stream started)

    @classmethod
    def bound(
        cls,
        *,
        stream_sid: str = "",
        call_sid: str = "",
        account_sid: str = "",
        custom_parameters: Mapping[str, str] | None = None,
    ) -> type[TwilioSerializer]:
        """This serializer with the call's identity fixed (the ``[twilio]`` settings): a class, since the
        link makes a fresh serializer for every session. Empty identifiers stay new per session."""
        identity = {
            "stream_sid": stream_sid or None,
            "call_sid": call_sid or None,
            "account_sid": account_sid or None,
            "custom_parameters": dict(custom_parameters or {}),
        }

        class ConfiguredTwilioSerializer(cls):  # type: ignore[valid-type,misc]
            def __init__(self, **options: Any) -> None:
                super().__init__(**{**identity, **options})

        return ConfiguredTwilioSerializer

    def _next_sequence(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    def opening_messages(self) -> list[bytes | str]:
        """``connected`` then ``start``: pipecat's runner reads exactly these two before it starts the bot."""
        self._sequence = self._chunk = self._samples_sent = 0
        connected = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        start = {
            "event": "start",
            "sequenceNumber": self._next_sequence(),
            "start": {
                "accountSid": self.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "customParameters": dict(self.custom_parameters),
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": TWILIO_SAMPLE_RATE, "channels": 1},
            },
            "streamSid": self.stream_sid,
        }
        return [encode_json(connected, "twilio connected"), encode_json(start, "twilio start")]

    def encode_audio(self, pcm: bytes, sample_rate: int, num_channels: int = 1) -> str:
        pcm = self._check_audio(pcm, sample_rate, num_channels)
        message = {
            "event": "media",
            "sequenceNumber": str(self._sequence + 1),
            "media": {
                "track": "inbound",
                "chunk": str(self._chunk + 1),
                "timestamp": str(self._samples_sent * 1000 // TWILIO_SAMPLE_RATE),
                "payload": base64.b64encode(mulaw_encode(pcm)).decode("ascii"),
            },
            "streamSid": self.stream_sid,
        }
        out = encode_json(message, "twilio media")
        self._check_outgoing_size(out, f"audio chunk of {len(pcm)} bytes")
        # Count only what is actually handed out, so a refused chunk leaves no gap in the numbering.
        self._sequence += 1
        self._chunk += 1
        self._samples_sent += len(pcm) // 2
        return out

    def encode_message(self, message: dict[str, Any]) -> str | None:
        """Twilio streams carry no RTVI or app messages: None, except for an RTVI ``dtmf`` of one key, which
        becomes Twilio's ``dtmf`` event (send one message per key: a Twilio event carries one digit)."""
        if not self.carries(message):
            return None
        event = {
            "event": "dtmf",
            "streamSid": self.stream_sid,
            "sequenceNumber": self._next_sequence(),
            "dtmf": {"track": "inbound_track", "digit": message["data"]["buttons"][0]},
        }
        return encode_json(event, "twilio dtmf")

    @classmethod
    def carries(cls, message: dict[str, Any]) -> bool:
        """Whether `encode_message` sends this message (the link asks before it queues one for this format)."""
        data = message.get("data")
        return (
            message.get("type") == "dtmf"
            and isinstance(data, dict)
            and isinstance(data.get("buttons"), list)
            and len(data["buttons"]) == 1
            and data["buttons"][0] in DTMF_KEYS
        )

    def closing_messages(self) -> list[bytes | str]:
        """A ``stop`` event, as Twilio sends when a call ends (pipecat ignores it; closing is what counts)."""
        stop = {
            "event": "stop",
            "sequenceNumber": self._next_sequence(),
            "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            "streamSid": self.stream_sid,
        }
        return [encode_json(stop, "twilio stop")]

    def decode(self, data: bytes | str) -> list[Event]:
        text = self._check_incoming(data)
        obj = decode_json(text, f"{self.name}: message", max_bytes=self.max_message_bytes)
        event = obj.get("event") if isinstance(obj, dict) else None
        if not isinstance(event, str):
            # pipecat's TwilioFrameSerializer forwards app transport messages as bare JSON.
            return [TransportMessage(obj)]
        if event == "media":
            return self._decode_media(obj)
        if event == "clear":
            return [Interruption()]
        return []  # mark, stop, dtmf and anything newer: nothing to do for a terminal

    def _decode_media(self, obj: dict[str, Any]) -> list[Event]:
        media = obj.get("media")
        if not isinstance(media, dict):
            raise ProtocolError(f"{self.name}: media event without a 'media' object")
        payload = media.get("payload")
        if not isinstance(payload, str):
            raise ProtocolError(f"{self.name}: media event without a string 'payload'")
        try:
            ulaw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(
                f"{self.name}: media payload of {len(payload)} characters is not base64"
            ) from None
        if not ulaw:
            return []
        return [AudioChunk(mulaw_decode(ulaw), TWILIO_SAMPLE_RATE, 1)]
