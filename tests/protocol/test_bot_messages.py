"""Builders for the messages a device sends the bot beyond push-to-talk (ui-event, dtmf by protocol version),
the interruption signal of a server by its version, bot-output 2.x, and the Twilio call's identity and DTMF."""

from __future__ import annotations

import json

import pytest

from voiceterm.protocol import rtvi, rtvi_parse
from voiceterm.protocol.errors import ProtocolError
from voiceterm.protocol.twilio import TwilioSerializer


def test_dtmf_takes_the_form_the_bots_protocol_version_reads() -> None:
    (one,) = rtvi.dtmf_for("12#", "2.2.0")
    assert (one["type"], one["data"]) == ("dtmf", {"buttons": ["1", "2", "#"]})
    assert rtvi.dtmf_for("12#", None)[0]["data"] == {"buttons": ["1", "2", "#"]}  # unknown: the current form
    legacy = rtvi.dtmf_for("12#", "2.0.3")  # 2.0.x read one {button} per message
    assert [m["data"] for m in legacy] == [{"button": "1"}, {"button": "2"}, {"button": "#"}]
    assert len({m["id"] for m in legacy}) == 3
    with pytest.raises(ProtocolError, match="has no DTMF"):
        rtvi.dtmf_for("1", "1.3.0")
    with pytest.raises(ProtocolError, match="buttons"):
        rtvi.dtmf_for("1a", "2.2.0")


def test_ui_event() -> None:
    message = rtvi.ui_event("door-opened", {"who": "me"})
    assert (message["type"], message["data"]) == (
        "ui-event",
        {"event": "door-opened", "payload": {"who": "me"}},
    )
    rtvi.check_client_message(message, "test")
    with pytest.raises(ProtocolError):
        rtvi.ui_event("")


@pytest.mark.parametrize(
    ("version", "about", "legacy"),
    [
        ("2.2.0", None, False),
        ("2.0.0", {"library": "other"}, False),
        ("1.3.0", {"library": "pipecat-ai", "library_version": "1.3.0"}, False),
        ("1.3.0", {"library": "pipecat-ai", "library_version": "1.2.1"}, True),
        ("1.0.0", {"library": "my-server", "library_version": "9.0.0"}, True),
        ("0.3.0", None, True),
        ("garbage", "not an object", True),
    ],
)
def test_which_servers_interrupt_with_user_started_speaking_alone(version, about, legacy) -> None:
    assert rtvi.interrupts_on_user_speech(version, about) is legacy


def test_bot_output_keeps_the_2x_progress() -> None:
    event = rtvi_parse.parse_server_message(
        {
            "label": "rtvi-ai",
            "type": "bot-output",
            "data": {
                "text": "Hi there",
                "spoken_progress": {"accumulated_text": "Hi", "remaining_text": " there"},
            },
        }
    )
    assert event.spoken_progress == {"accumulated_text": "Hi", "remaining_text": " there"}
    with pytest.raises(ProtocolError, match="spoken_progress"):
        rtvi_parse.parse_server_message(
            {"label": "rtvi-ai", "type": "bot-output", "data": {"text": "x", "spoken_progress": "half"}}
        )


def test_a_bound_twilio_serializer_poses_as_the_configured_call() -> None:
    cls = TwilioSerializer.bound(call_sid="CAfixed", custom_parameters={"user_id": "u1"})
    assert issubclass(cls, TwilioSerializer) and cls.name == "twilio" and not cls.supports_rtvi
    first, second = cls(max_message_bytes=4096), cls()
    _, start = (json.loads(m) for m in first.opening_messages())
    assert start["start"]["callSid"] == "CAfixed" and start["start"]["customParameters"] == {"user_id": "u1"}
    assert first.stream_sid != second.stream_sid  # empty in [twilio]: a new stream per session
    assert first.call_sid == second.call_sid == "CAfixed"
    assert first.max_message_bytes == 4096


def test_twilio_carries_one_key_dtmf_messages_and_no_other() -> None:
    s = TwilioSerializer(stream_sid="MZ1", call_sid="CA1")
    s.opening_messages()
    (key,) = rtvi.dtmf_for("#", None)
    assert s.carries(key)
    event = json.loads(s.encode_message(key))
    assert event == {
        "event": "dtmf",
        "streamSid": "MZ1",
        "sequenceNumber": "2",
        "dtmf": {"track": "inbound_track", "digit": "#"},
    }
    for message in (rtvi.dtmf("12"), rtvi.client_message("x"), {"type": "dtmf", "data": {"buttons": ["x"]}}):
        assert not s.carries(message)
        assert s.encode_message(message) is None
    with pytest.raises(ValueError, match="custom_parameters"):
        TwilioSerializer(custom_parameters={"n": 1})
