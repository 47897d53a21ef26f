"""protocol.rtvi: client message builders and the server message parser (typed events, tolerance,
only ProtocolError on bad input)."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceterm import __version__
from voiceterm.protocol import rtvi, rtvi_events, rtvi_parse
from voiceterm.protocol.errors import ProtocolError
from voiceterm.protocol.events import RTVIEvent, TransportMessage

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def test_protocol_version_is_pipecats_2x():
    assert re.fullmatch(r"2\.\d+\.\d+", rtvi.RTVI_PROTOCOL_VERSION)


def test_new_message_id_is_8_hex_and_fresh():
    ids = {rtvi.new_message_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[0-9a-f]{8}", i) for i in ids)


def assert_envelope(msg: dict, msg_type: str) -> None:
    assert msg["label"] == "rtvi-ai"
    assert msg["type"] == msg_type
    assert re.fullmatch(r"[0-9a-f]{8}", msg["id"])
    assert isinstance(msg["data"], dict)


def test_client_ready():
    msg = rtvi.client_ready(device_id="kiosk-7")
    assert_envelope(msg, "client-ready")
    assert msg["data"]["version"] == rtvi.RTVI_PROTOCOL_VERSION
    about = msg["data"]["about"]
    assert about["library"] == "voiceterm"
    assert about["library_version"] == __version__
    assert isinstance(about["platform"], str) and isinstance(about["platform_version"], str)
    details = about["platform_details"]
    assert details["device_id"] == "kiosk-7"
    assert set(details) == {"device_id", "machine", "python"}
    assert rtvi.client_ready(device_id="x", version="1.4.0")["data"]["version"] == "1.4.0"
    with pytest.raises(ProtocolError, match="version"):
        rtvi.client_ready(device_id="x", version="two")
    with pytest.raises(ProtocolError, match="device_id"):
        rtvi.client_ready(device_id=7)  # type: ignore[arg-type]


def test_client_message_and_push_to_talk():
    msg = rtvi.client_message("volume", {"level": 3})
    assert_envelope(msg, "client-message")
    assert msg["data"] == {"t": "volume", "d": {"level": 3}}
    assert rtvi.client_message("ping")["data"] == {"t": "ping", "d": None}
    with pytest.raises(ProtocolError):
        rtvi.client_message("")
    for state in ("start", "stop"):
        ptt = rtvi.push_to_talk(state)
        assert_envelope(ptt, "client-message")
        assert ptt["data"] == {"t": "push_to_talk", "d": {"state": state}}
    with pytest.raises(ProtocolError, match='"start" or "stop"'):
        rtvi.push_to_talk("pause")


def test_send_text_disconnect_dtmf_function_result():
    msg = rtvi.send_text("hello", run_immediately=False)
    assert_envelope(msg, "send-text")
    assert msg["data"] == {"content": "hello", "options": {"run_immediately": False, "audio_response": True}}
    with pytest.raises(ProtocolError):
        rtvi.send_text(b"bytes")  # type: ignore[arg-type]
    bye = rtvi.disconnect_bot()
    assert_envelope(bye, "disconnect-bot")
    assert bye["data"] == {}
    keys = rtvi.dtmf("12#*")
    assert_envelope(keys, "dtmf")
    assert keys["data"] == {"buttons": ["1", "2", "#", "*"]}
    for bad in ("", "12a"):
        with pytest.raises(ProtocolError):
            rtvi.dtmf(bad)
    res = rtvi.function_call_result(function_name="f", tool_call_id="c1", arguments={"a": 1}, result="ok")
    assert_envelope(res, "llm-function-call-result")
    assert res["data"] == {"function_name": "f", "tool_call_id": "c1", "arguments": {"a": 1}, "result": "ok"}
    with pytest.raises(ProtocolError):
        rtvi.function_call_result(function_name="f", tool_call_id="c1", arguments=[], result="ok")  # type: ignore[arg-type]


def test_is_compatible_version():
    assert rtvi.is_compatible_version("2.0.0")
    assert rtvi.is_compatible_version("2.9.13")
    assert not rtvi.is_compatible_version("1.4.0")
    assert not rtvi.is_compatible_version("3.0.0")
    assert not rtvi.is_compatible_version(None)
    assert not rtvi.is_compatible_version("2.x")


def server(msg_type: str, data: object = None, **extra: object) -> dict:
    msg = {"label": "rtvi-ai", "type": msg_type, **extra}
    if data is not None:
        msg["data"] = data
    return msg


def test_bot_ready():
    ev = rtvi_parse.parse_server_message(
        server(
            "bot-ready",
            {"version": "2.2.0", "about": {"library": "pipecat-ai"}, "capabilities": {"audio_out": True}},
            id="abcd1234",
        )
    )
    assert isinstance(ev, rtvi_events.BotReady)
    assert ev.type == "bot-ready" and ev.id == "abcd1234"
    assert ev.version == "2.2.0"
    assert ev.about == {"library": "pipecat-ai"}
    assert ev.capabilities == {"audio_out": True}
    # Older servers send no capabilities: a default, not an error.
    old = rtvi_parse.parse_server_message(server("bot-ready", {"version": "1.0.0"}, id="x"))
    assert isinstance(old, rtvi_events.BotReady) and old.capabilities is None and old.about is None


@pytest.mark.parametrize(
    ("msg", "cls", "fields"),
    [
        (
            server("error", {"error": "boom", "fatal": True}),
            rtvi_events.ServerError,
            {"error": "boom", "fatal": True},
        ),
        (
            server("error-response", {"error": "nope"}, id="i1"),
            rtvi_events.ErrorResponse,
            {"error": "nope", "id": "i1"},
        ),
        (
            server("server-response", {"t": "vol", "d": [1]}, id="i2"),
            rtvi_events.ServerResponse,
            {"t": "vol", "d": [1]},
        ),
        (server("server-message", {"anything": 1}), rtvi_events.ServerMessage, {"data": {"anything": 1}}),
        (server("user-started-speaking"), rtvi_events.UserStartedSpeaking, {"data": None}),
        (server("user-stopped-speaking"), rtvi_events.UserStoppedSpeaking, {}),
        (server("bot-started-speaking"), rtvi_events.BotStartedSpeaking, {}),
        (server("bot-stopped-speaking"), rtvi_events.BotStoppedSpeaking, {}),
        (server("bot-interrupted"), rtvi_events.BotInterrupted, {}),
        (server("vad-user-started-speaking"), rtvi_events.VADUserStartedSpeaking, {}),
        (server("vad-user-stopped-speaking"), rtvi_events.VADUserStoppedSpeaking, {}),
        (server("user-mute-started"), rtvi_events.UserMuteStarted, {}),
        (server("user-mute-stopped"), rtvi_events.UserMuteStopped, {}),
        (server("bot-llm-started"), rtvi_events.BotLLMStarted, {}),
        (server("bot-llm-stopped"), rtvi_events.BotLLMStopped, {}),
        (server("bot-tts-started"), rtvi_events.BotTTSStarted, {}),
        (server("bot-tts-stopped"), rtvi_events.BotTTSStopped, {}),
        (
            server("user-transcription", {"text": "hi", "user_id": "u", "timestamp": "t", "final": False}),
            rtvi_events.UserTranscription,
            {"text": "hi", "user_id": "u", "timestamp": "t", "final": False},
        ),
        (
            server("stt-raw-text", {"text": "hi", "user_id": "u", "timestamp": "t", "final": True}),
            rtvi_events.STTRawText,
            {"text": "hi", "final": True},
        ),
        (
            server("user-input", {"text": "hi", "input_type": "chat", "timestamp": "t", "final": True}),
            rtvi_events.UserInput,
            {"text": "hi", "input_type": "chat", "user_id": None},
        ),
        (
            server(
                "bot-output",
                {"text": "Hello.", "output_type": "sentence", "will_be_spoken": True, "spoken_status": "new"},
            ),
            rtvi_events.BotOutput,
            {"text": "Hello.", "output_type": "sentence", "will_be_spoken": True, "spoken_status": "new"},
        ),
        (server("bot-llm-text", {"text": "He"}), rtvi_events.BotLLMText, {"text": "He"}),
        (server("bot-tts-text", {"text": "Hello"}), rtvi_events.BotTTSText, {"text": "Hello"}),
        (server("bot-transcription", {"text": "Hello"}), rtvi_events.BotTranscription, {"text": "Hello"}),
        (server("user-llm-text", {"text": "q"}), rtvi_events.UserLLMText, {"text": "q"}),
        (server("llm-raw-text", {"text": "q"}), rtvi_events.LLMRawText, {"text": "q"}),
        (server("tts-raw-text", {"text": "q"}), rtvi_events.TTSRawText, {"text": "q"}),
        (
            server("metrics", {"ttfb": [{"value": 0.2}]}),
            rtvi_events.Metrics,
            {"data": {"ttfb": [{"value": 0.2}]}},
        ),
        (server("user-audio-level", {"value": 0.5}), rtvi_events.UserAudioLevel, {"value": 0.5}),
        (server("bot-audio-level", {"value": 1}), rtvi_events.BotAudioLevel, {"value": 1}),
        (
            server("llm-function-call", {"function_name": "f", "tool_call_id": "c", "args": {"x": 1}}),
            rtvi_events.LLMFunctionCall,
            {"function_name": "f", "tool_call_id": "c", "args": {"x": 1}},
        ),
        (
            server("llm-function-call-started", {"function_name": "f"}),
            rtvi_events.LLMFunctionCallStarted,
            {"function_name": "f"},
        ),
        (
            server("llm-function-call-in-progress", {"tool_call_id": "c", "arguments": {}}),
            rtvi_events.LLMFunctionCallInProgress,
            {"tool_call_id": "c", "function_name": None, "arguments": {}},
        ),
        (
            server("llm-function-call-stopped", {"tool_call_id": "c", "cancelled": False, "result": [1, 2]}),
            rtvi_events.LLMFunctionCallStopped,
            {"tool_call_id": "c", "cancelled": False, "result": [1, 2]},
        ),
    ],
)
def test_typed_events(msg, cls, fields):
    ev = rtvi_parse.parse_server_message(msg)
    assert type(ev) is cls
    assert ev.type == msg["type"]
    assert ev.data == msg.get("data")
    for name, value in fields.items():
        assert getattr(ev, name) == value, name


def test_every_typed_class_is_reachable_by_its_type():
    for cls in rtvi_events.EVENT_CLASSES:
        assert issubclass(cls, RTVIEvent)
        assert dataclasses.is_dataclass(cls)
        ev = rtvi_parse.parse_server_message(server(cls.TYPE))
        assert type(ev) is cls
        assert cls() == ev  # every field has a default: events are easy to build in tests
        with pytest.raises(dataclasses.FrozenInstanceError):
            ev.id = "x"  # type: ignore[misc]


def test_unknown_type_is_a_plain_event_and_extra_fields_are_kept():
    ev = rtvi_parse.parse_server_message(server("bot-llm-marker", {"text": "x"}, id="7"))
    assert type(ev) is RTVIEvent
    assert (ev.type, ev.id, ev.data) == ("bot-llm-marker", "7", {"text": "x"})
    ev = rtvi_parse.parse_server_message(server("bot-llm-text", {"text": "x", "new_field": [1]}))
    assert isinstance(ev, rtvi_events.BotLLMText) and ev.data == {"text": "x", "new_field": [1]}


@pytest.mark.parametrize(
    "obj", [None, 3, "text", [1, 2], {"event": "media"}, {"label": "other", "type": "x"}]
)
def test_non_rtvi_values_are_transport_messages(obj):
    assert rtvi_parse.parse_server_message(obj) == TransportMessage(obj)


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({"label": "rtvi-ai"}, "type"),
        ({"label": "rtvi-ai", "type": 5}, "type"),
        ({"label": "rtvi-ai", "type": ""}, "type"),
        ({"label": "rtvi-ai", "type": "bot-ready", "id": 5}, "'id' must be a string"),
        ({"label": "rtvi-ai", "type": "bot-output", "data": "hello"}, "'data' must be an object"),
        ({"label": "rtvi-ai", "type": "bot-output", "data": {"text": 5}}, r"data\.text has the wrong type"),
        ({"label": "rtvi-ai", "type": "error", "data": {"error": "x", "fatal": "yes"}}, r"data\.fatal"),
        ({"label": "rtvi-ai", "type": "bot-output", "data": {"text": "x", "segment_id": True}}, "segment_id"),
        ({"label": "rtvi-ai", "type": "bot-audio-level", "data": {"value": float("nan")}}, "value"),
        ({"label": "rtvi-ai", "type": "x" * 100, "id": []}, r"'xxx.*\.\.\.'"),  # long types are cut short
        ({"label": "rtvi-ai", "type": "x" * 1000}, "'type' of 1000 characters"),
        ({"label": "rtvi-ai", "type": "metrics", "id": "i" * 129}, "'id' of 129 characters"),
        ({"label": "rtvi-ai", "type": "bot-output", "data": {"segment_id": 10**30}}, "segment_id"),
        ({"label": "rtvi-ai", "type": "bot-audio-level", "data": {"value": 10**400}}, "value"),
    ],
)
def test_malformed_rtvi_raises_protocol_error(obj, match):
    with pytest.raises(ProtocolError, match=match) as info:
        rtvi_parse.parse_server_message(obj)
    assert len(str(info.value)) < 200


@given(json_values)
def test_parse_server_message_only_raises_protocol_error(value):
    try:
        ev = rtvi_parse.parse_server_message(value)
    except ProtocolError:
        return
    assert isinstance(ev, (RTVIEvent, TransportMessage))


@given(
    st.sampled_from(sorted(rtvi_parse.BY_TYPE)),
    st.one_of(st.none(), st.text(max_size=5), st.integers()),
    st.one_of(
        json_values, st.dictionaries(st.sampled_from(["text", "final", "value", "about", "t"]), json_values)
    ),
)
def test_parse_rtvi_envelopes_with_arbitrary_data(msg_type, msg_id, data):
    obj = {"label": "rtvi-ai", "type": msg_type, "id": msg_id, "data": data}
    try:
        ev = rtvi_parse.parse_server_message(obj)
    except ProtocolError:
        return
    assert ev.type == msg_type and ev.data == data
