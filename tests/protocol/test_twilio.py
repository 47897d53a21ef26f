"""protocol.twilio: the Twilio Media Streams messages a fake phone call sends and understands."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceterm.protocol.errors import ProtocolError
from voiceterm.protocol.events import AudioChunk, Interruption, TransportMessage
from voiceterm.protocol.mulaw import mulaw_decode, mulaw_encode
from voiceterm.protocol.twilio import TwilioSerializer

from .test_rtvi import json_values

PCM8 = (np.sin(np.arange(160) / 5) * 8000).astype("<i2").tobytes()  # 20 ms at 8 kHz


def test_class_attributes_and_generated_sids():
    s = TwilioSerializer()
    assert (s.name, s.text_frames, s.supports_rtvi, s.input_sample_rate) == ("twilio", True, False, 8000)
    assert re.fullmatch(r"MZ[0-9a-f]{32}", s.stream_sid)
    assert re.fullmatch(r"CA[0-9a-f]{32}", s.call_sid)
    assert TwilioSerializer().stream_sid != s.stream_sid
    given_sids = TwilioSerializer(stream_sid="MZ1", call_sid="CA1")
    assert (given_sids.stream_sid, given_sids.call_sid) == ("MZ1", "CA1")
    with pytest.raises(ValueError, match="stream_sid"):
        TwilioSerializer(stream_sid="")
    with pytest.raises(TypeError, match="no option"):
        TwilioSerializer(region="au1")


def test_opening_messages_are_connected_then_start():
    s = TwilioSerializer(stream_sid="MZabc", call_sid="CAdef")
    connected, start = (json.loads(m) for m in s.opening_messages())
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert start["event"] == "start"
    assert start["streamSid"] == "MZabc"
    assert start["start"]["streamSid"] == "MZabc" and start["start"]["callSid"] == "CAdef"
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert start["sequenceNumber"] == "1"


def test_media_messages_count_and_carry_mulaw():
    s = TwilioSerializer(stream_sid="MZabc")
    s.opening_messages()
    first, second = (json.loads(s.encode_audio(PCM8, 8000)) for _ in range(2))
    assert first["event"] == "media" and first["streamSid"] == "MZabc"
    assert first["media"]["track"] == "inbound"
    assert base64.b64decode(first["media"]["payload"]) == mulaw_encode(PCM8)
    assert (first["sequenceNumber"], first["media"]["chunk"], first["media"]["timestamp"]) == ("2", "1", "0")
    assert (second["sequenceNumber"], second["media"]["chunk"], second["media"]["timestamp"]) == (
        "3",
        "2",
        "20",
    )
    [stop] = (json.loads(m) for m in s.closing_messages())
    assert stop["event"] == "stop" and stop["sequenceNumber"] == "4" and stop["streamSid"] == "MZabc"
    # A refused chunk leaves no gap; a new call starts numbering afresh.
    with pytest.raises(ProtocolError):
        s.encode_audio(bytes(2 << 20), 8000)
    assert json.loads(s.encode_audio(PCM8, 8000))["sequenceNumber"] == "5"
    s.opening_messages()
    assert json.loads(s.encode_audio(PCM8, 8000))["media"]["chunk"] == "1"


@pytest.mark.parametrize(
    ("pcm", "rate", "channels", "match"),
    [
        (PCM8, 16000, 1, "must be 8000 Hz"),
        (PCM8, 0, 1, "out of range"),
        (PCM8, 8000, 2, "only mono"),
        (b"", 8000, 1, "empty"),
        (b"\x01", 8000, 1, "odd byte count"),
        (bytes(2 << 20), 8000, 1, "over max_message_bytes"),
    ],
)
def test_encode_audio_refuses_bad_input(pcm, rate, channels, match):
    with pytest.raises(ProtocolError, match=match):
        TwilioSerializer().encode_audio(pcm, rate, channels)


def test_no_message_channel():
    assert TwilioSerializer().encode_message({"label": "rtvi-ai", "type": "client-ready", "id": "1"}) is None


def test_decode():
    s = TwilioSerializer(stream_sid="MZabc")
    ulaw = mulaw_encode(PCM8)
    media = {"event": "media", "streamSid": "MZabc", "media": {"payload": base64.b64encode(ulaw).decode()}}
    assert s.decode(json.dumps(media)) == [AudioChunk(mulaw_decode(ulaw), 8000, 1)]
    assert s.decode(json.dumps({"event": "clear", "streamSid": "MZabc"})) == [Interruption()]
    for event in ("mark", "stop", "start", "connected", "dtmf", "something-new"):
        assert s.decode(json.dumps({"event": event, "streamSid": "MZabc"})) == []
    empty = {"event": "media", "media": {"payload": ""}}
    assert s.decode(json.dumps(empty)) == []
    # pipecat's serializer sends app transport messages as bare JSON.
    assert s.decode('{"kind":"app"}') == [TransportMessage({"kind": "app"})]
    assert s.decode("[1, 2]") == [TransportMessage([1, 2])]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b'{"event":"clear"}', "expected a text message"),
        ("not json", "invalid JSON"),
        ('{"event":"media"}', "without a 'media' object"),
        ('{"event":"media","media":{"payload":5}}', "string 'payload'"),
        ('{"event":"media","media":{"payload":"@@@@"}}', "not base64"),
        ('{"event":"media","media":{"payload":"é"}}', "not base64"),
        ('{"event":"media","media":{"payload":"QQ"}}', "not base64"),  # bad padding
    ],
)
def test_decode_refuses_garbage(data, match):
    with pytest.raises(ProtocolError, match=match):
        TwilioSerializer().decode(data)


def test_decode_tolerates_lone_surrogates_and_refuses_deep_json():
    s = TwilioSerializer()
    assert s.decode('{"kind":"\udc80"}') == [TransportMessage({"kind": "\udc80"})]
    with pytest.raises(ProtocolError, match="nested too deep"):
        s.decode("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ProtocolError, match="nested too deep"):
        s.decode('{"a":' * 65 + "1" + "}" * 65)
    assert s.decode('{"a":' * 63 + '"[[[[{{{{"' + "}" * 63)  # brackets inside strings do not count


def test_decode_refuses_oversize():
    s = TwilioSerializer(max_message_bytes=4096)
    with pytest.raises(ProtocolError, match="over max_message_bytes"):
        s.decode('{"event":"mark","x":"' + "a" * 5000 + '"}')
    with pytest.raises(ProtocolError, match="over max_message_bytes"):
        s.decode('{"x":"' + "é" * 3000 + '"}')  # 3000 characters, 6000 bytes of UTF-8


@given(st.binary(max_size=500))
def test_decode_any_binary_message_is_refused(data):
    with pytest.raises(ProtocolError):
        TwilioSerializer().decode(data)


@given(st.text(max_size=500))
@settings(max_examples=300)
def test_decode_arbitrary_text_only_raises_protocol_error(text):
    try:
        events = TwilioSerializer().decode(text)
    except ProtocolError:
        return
    assert len(events) <= 1


@given(json_values, st.sampled_from(["media", "clear", "mark", "stop", None]))
@settings(max_examples=300)
def test_decode_arbitrary_json_only_raises_protocol_error(value, event):
    obj = {"event": event, "media": value} if event else value
    try:
        events = TwilioSerializer().decode(json.dumps(obj))
    except ProtocolError:
        return
    assert len(events) <= 1


@given(st.binary(min_size=1, max_size=400))
def test_media_payload_round_trip(ulaw):
    payload = base64.b64encode(ulaw).decode()
    [chunk] = TwilioSerializer().decode(json.dumps({"event": "media", "media": {"payload": payload}}))
    assert chunk == AudioChunk(mulaw_decode(ulaw), 8000, 1)
    assert mulaw_encode(chunk.pcm) == ulaw.replace(b"\x7f", b"\xff")  # the two zeros collapse to +0
