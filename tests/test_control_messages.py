"""Control commands for messages to the bot and device functions: strict, bounded parsing, and the
`voiceterm ctl` words that make them."""

from __future__ import annotations

import json

import pytest

from voiceterm.core import control_commands as cc
from voiceterm.events_cli import ctl_message_request


def parse(**obj) -> object:
    return cc.parse_request(json.dumps(obj)).command


def test_the_new_commands_parse() -> None:
    assert parse(cmd="client-message", t="say", d={"ms": 5}) == cc.ClientMessage("say", {"ms": 5})
    assert parse(cmd="request", t="ping", timeout_s=2) == cc.ClientRequest("ping", None, 2.0)
    assert parse(cmd="ui-event", event="tap", payload=[1]) == cc.UiEvent("tap", [1])
    assert parse(cmd="dtmf", buttons=["1", "#"]) == cc.Dtmf("1#")
    assert parse(cmd="function-claim", names="open_door") == cc.ClaimFunctions(("open_door",))
    assert parse(cmd="function-release") == cc.ReleaseFunctions(None)
    assert parse(cmd="function-result", tool_call_id="c1", result="ok") == cc.FunctionResult("c1", "ok")
    assert parse(cmd="function-result", tool_call_id="c1", error="jammed") == cc.FunctionResult(
        "c1", None, "jammed"
    )
    assert parse(cmd="functions") == cc.Functions()
    assert "function-claim" in cc.help_result()


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"cmd": "client-message", "t": ""}, "t must be a non-empty string"),
        ({"cmd": "client-message", "t": "x" * 101}, "t longer than 100"),
        (
            {
                "cmd": "client-message",
                "t": "x",
                "d": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
            },
            "nested deeper",
        ),
        ({"cmd": "request", "t": "x", "timeout_s": 0}, "timeout_s 0 is out of range"),
        ({"cmd": "request", "t": "x", "timeout_s": True}, "timeout_s must be a number"),
        ({"cmd": "dtmf", "buttons": "12a"}, "buttons must be keys"),
        ({"cmd": "dtmf", "buttons": "1" * 33}, "more than 32 keys"),
        ({"cmd": "function-claim", "names": []}, "names must be"),
        ({"cmd": "function-result", "tool_call_id": "c"}, "either result"),
        ({"cmd": "function-result", "tool_call_id": "c", "result": {}, "error": "x"}, "either result"),
        ({"cmd": "function-result", "tool_call_id": "c", "result": 3}, "object or a string"),
        ({"cmd": "ui-event", "event": "x", "extra": 1}, "unknown argument 'extra'"),
    ],
)
def test_bad_requests_get_one_line_and_change_nothing(request_, error) -> None:
    with pytest.raises(cc.CommandError, match=error) as caught:
        cc.parse_request(json.dumps(request_))
    assert caught.value.cmd == request_["cmd"] and "\n" not in str(caught.value)


def test_ctl_words() -> None:
    assert ctl_message_request("client-message", ["say", '{"ms": 500}']) == {
        "cmd": "client-message",
        "t": "say",
        "d": {"ms": 500},
    }
    assert ctl_message_request("client-message", ["note", "hello there"]) == {
        "cmd": "client-message",
        "t": "note",
        "d": "hello there",
    }
    assert ctl_message_request("request", ["ping", "1", "2.5"]) == {
        "cmd": "request",
        "t": "ping",
        "d": 1,
        "timeout_s": 2.5,
    }
    assert ctl_message_request("ui-event", ["tap"]) == {"cmd": "ui-event", "event": "tap"}
    assert ctl_message_request("dtmf", ["12#"]) == {"cmd": "dtmf", "buttons": "12#"}
    assert ctl_message_request("status", []) is None  # not one of these
    with pytest.raises(ValueError, match="usage: voiceterm ctl request"):
        ctl_message_request("request", [])
    with pytest.raises(ValueError, match="keeps its connection open"):
        ctl_message_request("function-claim", ["x"])
