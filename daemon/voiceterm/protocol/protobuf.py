"""Pipecat's native framing: one binary WebSocket message is one protobuf ``pipecat.Frame``
(what ``ProtobufFrameSerializer`` and the browser's ``WebSocketTransport`` speak)."""

from __future__ import annotations

from typing import Any, ClassVar

from google.protobuf.message import DecodeError

from voiceterm.protocol import frames_pb2
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
from voiceterm.protocol.rtvi_parse import parse_server_message

__all__ = ["ProtobufSerializer"]


class ProtobufSerializer(Serializer):
    """Binary ``pipecat.Frame`` messages: audio and RTVI both ways, interruptions from the bot."""

    name: ClassVar[str] = "protobuf"
    text_frames: ClassVar[bool] = False
    supports_rtvi: ClassVar[bool] = True

    def encode_audio(self, pcm: bytes, sample_rate: int, num_channels: int = 1) -> bytes:
        pcm = self._check_audio(pcm, sample_rate, num_channels)
        # Every field set explicitly: pipecat divides by num_channels, so 0 would kill the session.
        frame = frames_pb2.Frame(
            audio=frames_pb2.AudioRawFrame(audio=pcm, sample_rate=sample_rate, num_channels=1)
        )
        out = frame.SerializeToString()
        self._check_outgoing_size(out, f"audio chunk of {len(pcm)} bytes")
        return out

    def encode_message(self, message: dict[str, Any]) -> bytes:
        if not isinstance(message, dict):
            raise ProtocolError(f"{self.name}: a message must be a dict, not {type(message).__name__}")
        check_client_message(message, self.name)
        text = encode_json(message, f"{self.name}: message")
        try:
            frame = frames_pb2.Frame(message=frames_pb2.MessageFrame(data=text))
        except ValueError as e:  # lone surrogates cannot be UTF-8 encoded into a protobuf string
            raise ProtocolError(
                f"{self.name}: message text is not valid Unicode ({type(e).__name__})"
            ) from None
        out = frame.SerializeToString()
        self._check_outgoing_size(out, "message")
        return out

    def decode(self, data: bytes | str) -> list[Event]:
        raw = self._check_incoming(data)
        try:
            frame = frames_pb2.Frame.FromString(raw)
        except DecodeError:
            raise ProtocolError(
                f"{self.name}: not a pipecat Frame ({len(raw)} bytes of invalid protobuf)"
            ) from None
        which = frame.WhichOneof("frame")
        if which == "audio":
            return self._decode_audio(frame.audio)
        if which == "message":
            obj = decode_json(
                frame.message.data, f"{self.name}: message frame", max_bytes=self.max_message_bytes
            )
            return [parse_server_message(obj)]
        if which == "interruption":
            return [Interruption()]
        if which == "text":
            return [TextFrameEvent(frame.text.text)]
        if which == "transcription":
            t = frame.transcription
            return [TranscriptionEvent(t.text, t.user_id, t.timestamp)]
        return []  # an empty frame, or a oneof case newer than this schema: ignore it

    def _decode_audio(self, audio: Any) -> list[Event]:
        pcm: bytes = audio.audio
        if not pcm:
            return []  # nothing to play
        rate: int = audio.sample_rate
        channels: int = audio.num_channels
        check_bot_audio(rate, channels, len(pcm), self.name)
        return [AudioChunk(pcm, rate, channels)]
