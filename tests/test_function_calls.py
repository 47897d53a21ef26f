"""The pure device-function table: which calls are the device's, exactly one answer per call, deadlines,
concurrency, claims, and the outcomes read from a command's exit and output. Time is a number passed in."""

from __future__ import annotations

import pytest

from voiceterm.core.function_calls import Accept, Answer, FunctionCalls, Limits, Run, Stop
from voiceterm.core.function_handlers import (
    CommandSpec,
    FunctionCallError,
    builtin_arguments,
    commands_from_config,
    result_from_command,
)

SENSOR = CommandSpec("read_sensor", ("/bin/sensor",), timeout_s=2.0, max_running=1)


def table(**limits) -> FunctionCalls:
    return FunctionCalls([SENSOR], ["set_volume", "end_session"], Limits(**limits))


def kinds(actions) -> list[str]:
    return [type(a).__name__ for a in actions]


def answers(actions) -> list[Answer]:
    return [a for a in actions if isinstance(a, Answer)]


def test_a_call_the_device_handles_runs_and_gets_exactly_one_answer() -> None:
    t = table()
    out = t.call("c1", "read_sensor", {"room": "hall"}, 10.0)
    assert kinds(out) == ["Accept", "Run"]
    assert out[1].spec == SENSOR and out[1].call.arguments == {"room": "hall"}
    (answer,) = t.answer("c1", 10.4, result={"celsius": 21.5})
    assert (answer.ok, answer.result_payload(), answer.elapsed_s) == (
        True,
        {"celsius": 21.5},
        pytest.approx(0.4),
    )
    # anything later about the same call changes nothing and sends nothing
    assert t.answer("c1", 10.5, result={"celsius": 0}) == []
    assert t.tick(99.0) == []
    assert t.counters["function_results_late_total"] == 1
    assert t.counters["function_results_ok_total"] == 1


def test_calls_for_functions_the_device_does_not_handle_are_left_to_the_bot() -> None:
    t = table()
    for call_id, name in [("c1", "get_weather"), (7, "read_sensor"), ("c3", None), ("", "read_sensor")]:
        assert t.call(call_id, name, {}, 1.0) == []
    assert t.counters["function_calls_ignored_total"] == 4
    assert t.next_deadline() is None


def test_a_call_announced_twice_runs_once() -> None:
    # pipecat may send both llm-function-call (deprecated) and llm-function-call-in-progress for one call
    t = table()
    assert kinds(t.call("c1", "read_sensor", {}, 1.0)) == ["Accept", "Run"]
    assert t.call("c1", "read_sensor", {}, 1.01) == []
    assert t.counters["function_calls_repeated_total"] == 1


def test_a_handler_that_does_not_answer_in_time_is_stopped_and_the_bot_gets_an_error() -> None:
    t = table()
    t.call("c1", "read_sensor", {}, 10.0)
    assert t.next_deadline() == 12.0
    assert t.tick(11.99) == []
    out = t.tick(12.0)
    assert kinds(out) == ["Stop", "Answer"]
    assert out[1].result_payload() == {"error": "read_sensor gave no answer within 2 s"}
    assert t.counters["function_calls_timed_out_total"] == 1
    assert t.answer("c1", 12.5, result={}) == []  # the command's own answer after that is late


def test_concurrency_is_bounded_per_function_and_a_waiting_call_keeps_its_deadline() -> None:
    t = table()
    t.call("c1", "read_sensor", {}, 10.0)
    assert kinds(t.call("c2", "read_sensor", {}, 10.5)) == ["Accept"]  # waits: max_running 1
    assert kinds(t.call("c3", "read_sensor", {}, 11.8)) == ["Accept"]
    out = t.answer("c1", 11.0, result={"n": 1})
    assert kinds(out) == ["Run", "Answer"]  # the first waiting call takes the slot
    assert out[0].call.tool_call_id == "c2"
    out = t.tick(13.8)  # c2 (from 10.5) expired running; c3 (from 11.8) expires waiting
    assert [(type(a).__name__, a.call.tool_call_id) for a in out] == [
        ("Stop", "c2"),
        ("Answer", "c2"),
        ("Answer", "c3"),
    ]
    assert out[2].error == "read_sensor waited for a free slot within 2 s"


def test_calls_beyond_the_open_limit_and_oversize_arguments_get_an_error_at_once() -> None:
    t = table(max_open=1, max_argument_bytes=32)
    t.call("c1", "set_volume", {"percent": 10}, 1.0)
    (answer,) = answers(t.call("c2", "end_session", {}, 1.0))
    assert answer.error == "too many function calls open on the device (1)"
    t.answer("c1", 1.1, result={"volume_percent": 10})
    (answer,) = answers(t.call("c3", "set_volume", {"note": "x" * 40}, 1.2))
    assert answer.error == "arguments larger than 32 bytes"
    (answer,) = answers(t.call("c4", "set_volume", [1, 2], 1.3))
    assert answer.error == "arguments must be a JSON object"
    assert t.counters["function_calls_refused_total"] == 3


@pytest.mark.parametrize(
    ("result", "error"),
    [
        ([1, 2], "the handler's result is a JSON array; it must be an object or a string"),
        (None, "the handler's result is a JSON null; it must be an object or a string"),
        ({"text": "y" * 100}, "the handler's result is larger than 64 bytes"),
    ],
)
def test_a_result_pipecat_would_refuse_becomes_an_error_answer(result, error) -> None:
    t = table(max_result_bytes=64)
    t.call("c1", "read_sensor", {}, 1.0)
    (answer,) = t.answer("c1", 1.1, result=result)
    assert answer.error == error


def test_a_cancelled_call_and_a_session_end_stop_the_handlers_without_an_answer() -> None:
    t = table()
    t.call("c1", "read_sensor", {}, 1.0)
    t.call("c2", "read_sensor", {}, 1.0)  # waiting
    out = t.cancel("c1", 1.5)
    assert kinds(out) == ["Stop", "Run"] and out[1].call.tool_call_id == "c2"
    assert t.cancel("nope", 1.5) == []
    t.call("c3", "set_volume", {"percent": 5}, 1.6)
    out = t.session_ended(2.0)
    assert sorted(kinds(out)) == ["Stop", "Stop"]
    assert not answers(out)
    assert t.next_deadline() is None
    assert t.counters["function_calls_dropped_total"] == 3


def test_claims_belong_to_one_client_and_its_calls_are_answered_by_it_alone() -> None:
    t = table()
    assert t.claim(5, ["open_door", "ring"]) == ["open_door", "ring"]
    with pytest.raises(FunctionCallError, match="already claimed by another client"):
        t.claim(6, ["open_door"])
    with pytest.raises(FunctionCallError, match="is a command function"):
        t.claim(6, ["read_sensor"])
    with pytest.raises(FunctionCallError, match="is not a function name"):
        t.claim(6, ["rm -rf"])
    out = t.call("c1", "open_door", {"door": "front"}, 1.0)
    assert kinds(out) == ["Accept", "Run"] and out[1].call.owner == 5
    with pytest.raises(FunctionCallError, match="not this client's"):
        t.answer("c1", 1.1, result={}, client=6)
    with pytest.raises(FunctionCallError, match="no open call"):
        t.answer("c9", 1.1, result={}, client=5)
    (answer,) = t.answer("c1", 1.2, result="opened", client=5)
    assert answer.result_payload() == "opened"


def test_a_client_that_goes_away_leaves_an_error_for_its_open_calls_and_for_later_ones() -> None:
    t = table(control_timeout_s=3.0)
    t.claim(5, ["open_door"])
    t.call("c1", "open_door", {}, 1.0)
    assert t.next_deadline() == 4.0
    out = t.release(5, None, 1.5)
    assert kinds(out) == ["Stop", "Answer"]
    assert out[1].error == "the function's handler went away"
    # the bot's function is still meant for the device: a later call gets an error, not silence
    (answer,) = answers(t.call("c2", "open_door", {}, 2.0))
    assert answer.error == "no integration answers open_door now"
    t.claim(6, ["open_door"])  # someone else takes it over
    assert kinds(t.call("c3", "open_door", {}, 2.5)) == ["Accept", "Run"]


def test_a_configuration_cannot_name_an_unknown_builtin_or_a_builtin_twice() -> None:
    with pytest.raises(ValueError, match="unknown built-in"):
        FunctionCalls([], ["format_disk"])
    with pytest.raises(ValueError, match="both a command and a built-in"):
        FunctionCalls([CommandSpec("mute", ("/bin/x",))], ["mute"])


def test_every_accepted_call_is_announced_first() -> None:
    t = table(max_open=1)
    t.call("c1", "read_sensor", {}, 1.0)
    out = t.call("c2", "end_session", {}, 1.0)  # refused, but still announced before its error answer
    assert isinstance(out[0], Accept) and isinstance(out[1], Answer)
    assert not any(isinstance(a, (Run, Stop)) for a in out)


@pytest.mark.parametrize(
    ("status", "stdout", "truncated", "expected"),
    [
        (0, b'{"celsius": 21.5}\n', False, ({"celsius": 21.5}, None)),
        (0, b'"opened"', False, ("opened", None)),
        (0, b"[1]", False, ([1], None)),  # the table then refuses the array
        (3, b'{"ok": true}', False, (None, "the command exited with status 3")),
        (-9, b"", False, (None, "the command was killed by signal 9")),
        (None, b"", False, (None, "the command could not be started")),
        (0, b"", False, (None, "the command printed nothing; print the result as JSON")),
        (0, b"hello", False, (None, "the command's output is not JSON; print the result as JSON")),
        (0, b'{"a": ', True, (None, "the command printed more than the result limit")),
        (0, b"[" * 100_000, False, (None, "the command's output is not JSON; print the result as JSON")),
    ],
)
def test_a_commands_outcome(status, stdout, truncated, expected) -> None:
    assert result_from_command(status, stdout, truncated=truncated) == expected


def test_builtin_arguments_are_checked() -> None:
    assert builtin_arguments("set_volume", {"percent": 49.6}) == {"percent": 50}
    assert builtin_arguments("mute", {}) == {"muted": True}
    assert builtin_arguments("end_session", {"why": "bye"}) == {}
    for name, args in [("set_volume", {"percent": 500}), ("set_volume", {}), ("mute", {"muted": "yes"})]:
        with pytest.raises(FunctionCallError):
            builtin_arguments(name, args)


def test_command_specs_from_the_configuration() -> None:
    specs = commands_from_config(
        {"a": {"command": ["/bin/a", "-x"], "timeout_s": 3}, "b": {"command": ["/bin/b"]}}
    )
    assert specs == [CommandSpec("a", ("/bin/a", "-x"), 3.0, 1), CommandSpec("b", ("/bin/b",), 5.0, 1)]
