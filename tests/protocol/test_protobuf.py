"""protocol.protobuf: pipecat Frame encoding/decoding, validation, and fuzzing of the decoder."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceterm.protocol import rtvi
from voiceterm.protocol.errors import ProtocolError
from voiceterm.protocol.events import (
    AudioChunk,
    Interruption,
    RTVIEvent,
    TextFrameEvent,
    TranscriptionEvent,
    TransportMessage,
)
from voiceterm.protocol.protobuf import ProtobufSerializer
from voiceterm.protocol.rtvi_events import BotInterrupted, BotReady
from voiceterm_devkit import frames_pb2

from .test_rtvi import json_values

PCM = bytes(range(256)) * 2 + bytes(128)  # 640 bytes: 20 ms at 16 kHz


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"x": value}
    return value


def wire(**oneof: object) -> bytes:
    """A Frame built straight from the generated classes, as the server's serializer builds it."""
    return frames_pb2.Frame(**oneof).SerializeToString()


def test_class_attributes():
    s = ProtobufSerializer()
    assert (s.name, s.text_frames, s.supports_rtvi, s.input_sample_rate) == ("protobuf", False, True, None)
    assert s.max_message_bytes == 1 << 20
    assert s.opening_messages() == [] and s.closing_messages() == []


def test_encode_audio_sets_every_field():
    out = ProtobufSerializer().encode_audio(PCM, 16000)
    assert isinstance(out, bytes)
    frame = frames_pb2.Frame.FromString(out)
    assert frame.WhichOneof("frame") == "audio"
    assert (frame.audio.audio, frame.audio.sample_rate, frame.audio.num_channels) == (PCM, 16000, 1)
    assert ProtobufSerializer().encode_audio(bytearray(PCM), 16000) == out
    assert ProtobufSerializer().encode_audio(memoryview(PCM), 16000) == out


@pytest.mark.parametrize(
    ("pcm", "rate", "channels", "match"),
    [
        (PCM, 16000, 2, "only mono"),
        (PCM, 16000, 0, "only mono"),
        (PCM, 16000, True, "only mono"),
        (PCM, 0, 1, "out of range"),
        (PCM, -8000, 1, "out of range"),
        (PCM, 10**7, 1, "out of range"),
        (PCM, 16000.0, 1, "must be an integer"),
        (PCM, True, 1, "must be an integer"),
        (b"", 16000, 1, "empty"),
        (b"\x00\x01\x02", 16000, 1, "odd byte count"),
        ("text", 16000, 1, "must be bytes"),
        (bytes(2 << 20), 16000, 1, "over max_message_bytes"),
    ],
)
def test_encode_audio_refuses_bad_input(pcm, rate, channels, match):
    with pytest.raises(ProtocolError, match=match):
        ProtobufSerializer().encode_audio(pcm, rate, channels)
    # Also right after a good chunk of the size and rate the mic sends (whose checks are then skipped).
    s = ProtobufSerializer()
    s.encode_audio(PCM, 16000)
    with pytest.raises(ProtocolError, match=match):
        s.encode_audio(pcm, rate, channels)


def test_chunks_like_the_last_good_one_encode_the_same_and_true_is_not_rate_1():
    s = ProtobufSerializer()
    first = s.encode_audio(PCM, 16000)
    again = s.encode_audio(bytes(len(PCM)), 16000)  # the same size and rate: the checked path's twin
    assert frames_pb2.Frame.FromString(again).audio.audio == bytes(len(PCM))
    assert again == first.replace(PCM, bytes(len(PCM)))
    s.encode_audio(bytes(2), 1)
    with pytest.raises(ProtocolError, match="must be an integer"):
        s.encode_audio(bytes(2), True)  # equal to 1 as a key, not as a rate
    assert s.encode_audio(bytearray(PCM), 16000) == first  # not bytes: checked (and copied) again


def test_size_limit_counts_the_whole_message():
    s = ProtobufSerializer(max_message_bytes=1000)
    s.encode_audio(bytes(980), 16000)  # 980 bytes of audio + 13 bytes of framing fit
    with pytest.raises(ProtocolError, match="max_message_bytes=1000"):
        s.encode_audio(bytes(1000), 16000)


def test_encode_message_round_trips_through_decode():
    s = ProtobufSerializer()
    msg = rtvi.push_to_talk("start")
    out = s.encode_message(msg)
    frame = frames_pb2.Frame.FromString(out)
    assert frame.WhichOneof("frame") == "message"
    assert json.loads(frame.message.data) == msg
    # The client's own message decodes as an RTVI event of an unknown (client) type.
    [ev] = s.decode(out)
    assert type(ev) is RTVIEvent and ev.type == "client-message" and ev.data == msg["data"]
    # Non-ASCII text goes out as UTF-8, not \u escapes.
    assert "Olá".encode() in s.encode_message(rtvi.send_text("Olá"))


@pytest.mark.parametrize(
    ("message", "match"),
    [
        ([1, 2], "must be a dict"),
        ({"label": "rtvi-ai", "type": "send-text", "data": {}}, "without a string 'id'"),
        ({"label": "rtvi-ai", "id": "1"}, "without a string 'type'"),
        ({"label": "rtvi-ai", "type": "x", "id": "1", "data": [1]}, "'data' must be an object"),
        ({"x": float("nan")}, "not serializable as JSON"),
        ({"x": object()}, "not serializable as JSON"),
        ({"x": "\udc80"}, "not valid Unicode"),
        ({"x": "a" * (2 << 20)}, "over max_message_bytes"),
        (nested(100_000), "not serializable as JSON"),
    ],
)
def test_encode_message_refuses_bad_input(message, match):
    with pytest.raises(ProtocolError, match=match):
        ProtobufSerializer().encode_message(message)


def test_encode_message_accepts_app_messages():
    out = ProtobufSerializer().encode_message({"kind": "app", "n": [1, 2]})
    assert json.loads(frames_pb2.Frame.FromString(out).message.data) == {"kind": "app", "n": [1, 2]}


def test_decode_every_server_case():
    s = ProtobufSerializer()
    audio = frames_pb2.AudioRawFrame(audio=PCM, sample_rate=24000, num_channels=1, id=7, name="x", pts=5)
    assert s.decode(wire(audio=audio)) == [AudioChunk(PCM, 24000, 1)]
    stereo = frames_pb2.AudioRawFrame(audio=PCM, sample_rate=48000, num_channels=2)
    assert s.decode(wire(audio=stereo)) == [AudioChunk(PCM, 48000, 2)]
    assert s.decode(wire(interruption=frames_pb2.InterruptionFrame(id=3))) == [Interruption()]
    assert s.decode(wire(text=frames_pb2.TextFrame(text="hi"))) == [TextFrameEvent("hi")]
    t = frames_pb2.TranscriptionFrame(text="hi", user_id="u", timestamp="2026")
    assert s.decode(wire(transcription=t)) == [TranscriptionEvent("hi", "u", "2026")]
    ready = {"label": "rtvi-ai", "type": "bot-ready", "id": "abc", "data": {"version": "2.2.0"}}
    [ev] = s.decode(wire(message=frames_pb2.MessageFrame(data=json.dumps(ready))))
    assert isinstance(ev, BotReady) and ev.id == "abc" and ev.version == "2.2.0"
    [ev] = s.decode(
        wire(message=frames_pb2.MessageFrame(data='{"label":"rtvi-ai","type":"bot-interrupted"}'))
    )
    assert isinstance(ev, BotInterrupted)
    assert s.decode(wire(message=frames_pb2.MessageFrame(data="[1]"))) == [TransportMessage([1])]


def test_decode_ignores_empty_frames_empty_audio_and_unknown_oneof_cases():
    s = ProtobufSerializer()
    assert s.decode(b"") == []
    assert s.decode(wire(audio=frames_pb2.AudioRawFrame(sample_rate=24000, num_channels=1))) == []
    # Field 9 of Frame, a length-delimited sub-message: a oneof case newer than our schema.
    assert s.decode(b"\x4a\x02\x08\x01") == []
    # Unknown fields inside a known case are skipped too.
    inner = frames_pb2.InterruptionFrame(id=1).SerializeToString() + b"\x50\x01"  # field 10 varint
    assert s.decode(b"\x2a" + bytes([len(inner)]) + inner) == [Interruption()]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("text message", "expected a binary message"),
        (12, "expected a binary message"),
        (b"\xff\xff\xff", "not a pipecat Frame"),
        (b"\x12\x05\x1a", "not a pipecat Frame"),  # truncated
        (wire(audio=frames_pb2.AudioRawFrame(audio=PCM, sample_rate=0, num_channels=1)), "sample_rate 0"),
        (wire(audio=frames_pb2.AudioRawFrame(audio=PCM, sample_rate=16000)), "num_channels 0"),
        (
            wire(audio=frames_pb2.AudioRawFrame(audio=PCM, sample_rate=16000, num_channels=99)),
            "num_channels 99",
        ),
        (
            wire(audio=frames_pb2.AudioRawFrame(audio=b"\x00" * 3, sample_rate=16000, num_channels=1)),
            "16-bit",
        ),
        (
            wire(audio=frames_pb2.AudioRawFrame(audio=b"\x00" * 6, sample_rate=16000, num_channels=2)),
            "16-bit",
        ),
        # Formats no voice bot means: a 1 Hz frame would make the resampler turn 64 KiB into gigabytes.
        (wire(audio=frames_pb2.AudioRawFrame(audio=PCM, sample_rate=1, num_channels=1)), "sample_rate 1 "),
        (wire(audio=frames_pb2.AudioRawFrame(audio=PCM, sample_rate=7999, num_channels=1)), "7999"),
        (wire(audio=frames_pb2.AudioRawFrame(audio=PCM, sample_rate=48001, num_channels=1)), "48001"),
        (
            wire(audio=frames_pb2.AudioRawFrame(audio=PCM, sample_rate=2**32 - 1, num_channels=1)),
            "4294967295",
        ),
        (
            wire(audio=frames_pb2.AudioRawFrame(audio=PCM, sample_rate=16000, num_channels=3)),
            "num_channels 3",
        ),
        (wire(message=frames_pb2.MessageFrame(data="{not json")), "invalid JSON"),
        (
            wire(message=frames_pb2.MessageFrame(data="[" * 100_000 + "]" * 100_000)),
            "nested too deep",
        ),
        (wire(message=frames_pb2.MessageFrame(data="[" * 65 + "]" * 65)), "nested too deep"),
        (wire(message=frames_pb2.MessageFrame(data="1" * 5000)), "invalid JSON"),  # int digit limit
        (wire(message=frames_pb2.MessageFrame(data='{"label":"rtvi-ai"}')), "type"),
        # A string field holding invalid UTF-8 (MessageFrame.data = b"\xff").
        (b"\x22\x03\x0a\x01\xff", "not a pipecat Frame"),
    ],
)
def test_decode_refuses_garbage(data, match):
    with pytest.raises(ProtocolError, match=match):
        ProtobufSerializer().decode(data)


def test_decode_refuses_oversize_messages():
    s = ProtobufSerializer(max_message_bytes=4096)
    big = wire(audio=frames_pb2.AudioRawFrame(audio=bytes(4096), sample_rate=16000, num_channels=1))
    with pytest.raises(ProtocolError, match="over max_message_bytes=4096"):
        s.decode(big)
    # The server's 2 s of goodbye silence (~96 KB) fits the default limit.
    tail = wire(audio=frames_pb2.AudioRawFrame(audio=bytes(96000), sample_rate=24000, num_channels=1))
    assert ProtobufSerializer().decode(tail)[0].duration == pytest.approx(2.0)


def test_constructor_checks():
    with pytest.raises(TypeError, match="no option"):
        ProtobufSerializer(stream_sid="x")
    with pytest.raises(ValueError, match="max_message_bytes"):
        ProtobufSerializer(max_message_bytes=0)


@given(st.binary(max_size=2000))
@settings(max_examples=500)
def test_decode_arbitrary_bytes_only_raises_protocol_error(data):
    try:
        events = ProtobufSerializer().decode(data)
    except ProtocolError:
        return
    assert isinstance(events, list)


@given(st.text(max_size=200))
def test_decode_any_text_message_is_refused(text):
    with pytest.raises(ProtocolError):
        ProtobufSerializer().decode(text)


@given(json_values)
@settings(max_examples=300)
def test_decode_arbitrary_json_in_a_message_frame(value):
    data = json.dumps(value)
    try:
        events = ProtobufSerializer().decode(wire(message=frames_pb2.MessageFrame(data=data)))
    except ProtocolError:
        return
    assert len(events) == 1


@given(st.text(max_size=300))
def test_decode_arbitrary_text_in_a_message_frame(text):
    try:
        frame = wire(message=frames_pb2.MessageFrame(data=text))
    except ValueError:
        return  # lone surrogates: not representable on the wire at all
    try:
        events = ProtobufSerializer().decode(frame)
    except ProtocolError:
        return
    assert len(events) == 1


@given(
    audio=st.binary(max_size=64),
    rate=st.integers(0, 2**32 - 1),
    channels=st.integers(0, 2**32 - 1),
)
def test_decode_arbitrary_audio_fields(audio, rate, channels):
    frame = wire(audio=frames_pb2.AudioRawFrame(audio=audio, sample_rate=rate, num_channels=channels))
    try:
        events = ProtobufSerializer().decode(frame)
    except ProtocolError:
        return
    if events:
        [chunk] = events
        assert chunk.pcm == audio and chunk.sample_rate == rate and chunk.num_channels == channels
        assert len(audio) % (2 * channels) == 0


@given(
    pcm=st.binary(min_size=2, max_size=4000).filter(lambda b: len(b) % 2 == 0), rate=st.integers(8000, 48000)
)
def test_encode_decode_audio_round_trip(pcm, rate):
    s = ProtobufSerializer()
    assert s.decode(s.encode_audio(pcm, rate)) == [AudioChunk(pcm, rate, 1)]


@given(json_values)
def test_encode_message_only_raises_protocol_error(value):
    message = {"label": "rtvi-ai", "type": "client-message", "id": "1", "data": {"t": "x", "d": value}}
    try:
        out = ProtobufSerializer().encode_message(message)
    except ProtocolError:
        return
    [ev] = ProtobufSerializer().decode(out)
    assert ev.type == "client-message"
