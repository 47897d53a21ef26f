"""Pipecat's native framing: one binary WebSocket message is one protobuf ``pipecat.Frame``
(what ``ProtobufFrameSerializer`` and the browser's ``WebSocketTransport`` speak), read and written by
protocol/pbwire.py (no protobuf runtime in the daemon; the generated frames_pb2, in the devkit, is for tests and tools)."""

from __future__ import annotations

from typing import Any, ClassVar

from voiceterm.protocol import pbwire
from voiceterm.protocol.base import Serializer, check_bot_audio, decode_json, encode_json
from voiceterm.protocol.errors import ProtocolError
from voiceterm.protocol.events import (
    AudioChunk,
    Event,
    Interruption,
    TextFrameEvent,
    TranscriptionEvent,
)
from voiceterm.protocol.rtvi import check_client_message

__all__ = ["ProtobufSerializer"]


class ProtobufSerializer(Serializer):
    """Binary ``pipecat.Frame`` messages: audio and RTVI both ways, interruptions from the bot."""

    name: ClassVar[str] = "protobuf"
    text_frames: ClassVar[bool] = False
    supports_rtvi: ClassVar[bool] = True
    _checked_audio: tuple[int, int] | None = None  # (bytes, rate) of the last chunk that passed the checks

    def encode_audio(self, pcm: bytes, sample_rate: int, num_channels: int = 1) -> bytes:
        # Every chunk from the mic has the size and rate of the one before: what passed the checks once
        # passes them again (bytes, mono, an int rate; the size decides the rest).
        if (
            type(pcm) is bytes
            and type(sample_rate) is int
            and type(num_channels) is int
            and num_channels == 1
            and (len(pcm), sample_rate) == self._checked_audio
        ):
            return pbwire.encode_audio_frame(pcm, sample_rate, 1)
        pcm = self._check_audio(pcm, sample_rate, num_channels)
        # Every field set explicitly: pipecat divides by num_channels, so 0 would kill the session.
        out = pbwire.encode_audio_frame(pcm, sample_rate, 1)
        self._check_outgoing_size(out, f"audio chunk of {len(pcm)} bytes")
        self._checked_audio = (len(pcm), sample_rate)
        return out

    def encode_message(self, message: dict[str, Any]) -> bytes:
        if not isinstance(message, dict):
            raise ProtocolError(f"{self.name}: a message must be a dict, not {type(message).__name__}")
        check_client_message(message, self.name)
        text = encode_json(message, f"{self.name}: message")
        try:
            out = pbwire.encode_message_frame(text)
        except ValueError as e:  # lone surrogates cannot be UTF-8 encoded into a protobuf string
            raise ProtocolError(
                f"{self.name}: message text is not valid Unicode ({type(e).__name__})"
            ) from None
        self._check_outgoing_size(out, "message")
        return out

    def decode(self, data: bytes | str) -> list[Event]:
        raw = self._check_incoming(data)
        assert isinstance(raw, bytes)
        try:
            which, fields = pbwire.decode_frame(raw)
        except pbwire.WireError as e:
            raise ProtocolError(
                f"{self.name}: not a pipecat Frame ({len(raw)} bytes of invalid protobuf: {e})"
            ) from None
        if which == "audio":
            return self._decode_audio(fields)
        if which == "message":
            # The RTVI classes load with the first message, after READY (config validation and the daemon
            # look this serializer up at start-up; core/dispatch.py).
            from voiceterm.protocol.rtvi_parse import parse_server_message

            obj = decode_json(fields["data"], f"{self.name}: message frame", max_bytes=self.max_message_bytes)
            return [parse_server_message(obj)]
        if which == "interruption":
            return [Interruption()]
        if which == "text":
            return [TextFrameEvent(fields["text"])]
        if which == "transcription":
            return [TranscriptionEvent(fields["text"], fields["user_id"], fields["timestamp"])]
        return []  # an empty frame, or a oneof case newer than this schema: ignore it

    def _decode_audio(self, audio: dict[str, Any]) -> list[Event]:
        pcm: bytes = audio["audio"]
        if not pcm:
            return []  # nothing to play
        rate: int = audio["sample_rate"]
        channels: int = audio["num_channels"]
        check_bot_audio(rate, channels, len(pcm), self.name)
        return [AudioChunk(pcm, rate, channels)]
