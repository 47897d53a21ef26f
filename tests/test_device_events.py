"""The event stream's pure parts: bot events and link changes to stream events, the terminal's observable
state diffed into device events, the JSON line, and the control requests' parser."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceterm.core import control_commands as cc
from voiceterm.core import device_events as de
from voiceterm.core import stream_reporter as sr
from voiceterm.core.linkstate import LinkState, LinkStatus
from voiceterm.protocol import rtvi_parse
from voiceterm.protocol.events import Interruption, TranscriptionEvent, TransportMessage


def _rtvi(type_: str, data: object = None, id_: str | None = None) -> object:
    return rtvi_parse.parse_server_message({"label": "rtvi-ai", "type": type_, "id": id_, "data": data})


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            _rtvi("bot-ready", {"version": "2.2.0", "about": {"library": "pipecat-ai"}}),
            de.OnBotReady("2.2.0", {"library": "pipecat-ai"}),
        ),
        (_rtvi("user-started-speaking"), de.OnUserStartedSpeaking()),
        (_rtvi("user-stopped-speaking"), de.OnUserStoppedSpeaking()),
        (_rtvi("bot-started-speaking"), de.OnBotStartedSpeaking()),
        (_rtvi("bot-stopped-speaking"), de.OnBotStoppedSpeaking()),
        (_rtvi("bot-interrupted"), de.OnBotInterrupted("rtvi")),
        (Interruption(), de.OnBotInterrupted("interruption-frame")),
        (
            _rtvi("user-transcription", {"text": "hi", "final": False, "user_id": "u", "timestamp": "t"}),
            de.OnUserTranscript("hi", False, "u", "t"),
        ),
        (TranscriptionEvent("hi", "u", "t"), de.OnUserTranscript("hi", True, "u", "t")),
        (_rtvi("user-input", {"text": "hi", "input_type": "chat"}), de.OnUserInput("hi", "chat", True)),
        (  # protocol 2.x, as pipecat 1.14 sends it to a 2.x client
            _rtvi(
                "bot-output",
                {
                    "text": "Hello there.",
                    "output_type": "sentence",
                    "segment_id": 3,
                    "will_be_spoken": True,
                    "spoken_status": "in-progress",
                    "spoken_progress": {"accumulated_text": "Hello", "remaining_text": " there."},
                },
            ),
            de.OnBotOutput(
                "Hello there.",
                "sentence",
                3,
                True,
                "in-progress",
                {"accumulated_text": "Hello", "remaining_text": " there."},
            ),
        ),
        (  # the 1.x `spoken` flag is not carried on
            _rtvi("bot-output", {"text": "Hi.", "spoken": True, "output_type": "sentence"}),
            de.OnBotOutput("Hi.", "sentence"),
        ),
        (_rtvi("bot-transcription", {"text": "Hello."}), de.OnBotTranscript("Hello.")),
        (_rtvi("bot-llm-text", {"text": "Hel"}), de.OnBotLlmText("Hel")),
        (_rtvi("bot-tts-text", {"text": "Hello."}), de.OnBotTtsText("Hello.")),
        (_rtvi("bot-llm-started"), de.OnBotLlmStarted()),
        (_rtvi("bot-tts-stopped"), de.OnBotTtsStopped()),
        (_rtvi("server-message", {"any": [1]}), de.OnServerMessage({"any": [1]})),
        (_rtvi("server-response", {"t": "x", "d": 2}, "ab12cd34"), de.OnServerResponse("x", 2, "ab12cd34")),
        (_rtvi("error", {"error": "LLM down", "fatal": True}), de.OnError("LLM down", True)),
        (_rtvi("error-response", {"error": "bad"}, "ab12cd34"), de.OnMessageError("bad", "ab12cd34")),
        (_rtvi("metrics", {"ttfb": []}), de.OnMetrics({"ttfb": []})),
        (_rtvi("user-mute-started"), de.OnUserMuteStarted()),
        (
            _rtvi("llm-function-call", {"function_name": "f", "tool_call_id": "1", "args": {"a": 1}}),
            de.OnLlmFunctionCall("f", "1", {"a": 1}),
        ),
        (_rtvi("brand-new-type", {"x": 1}), de.OnRtviMessage("brand-new-type", {"x": 1})),
        (_rtvi("bot-audio-level", {"value": 0.5}), de.OnRtviMessage("bot-audio-level", {"value": 0.5})),
        (TransportMessage({"app": 1}), de.OnAppMessage({"app": 1})),
        (object(), None),
    ],
)
def test_bot_events_become_the_browser_clients_callbacks(message: object, expected: object) -> None:
    assert sr.from_bot(message) == expected


def test_link_status_changes() -> None:
    connecting = LinkStatus(LinkState.CONNECTING)
    backing = LinkStatus(LinkState.BACKING_OFF, attempt=2, last_error="refused", retry_in=1.4999)
    assert sr.from_link_status(None, connecting) == [de.TransportStateChanged("connecting", None, 0, None)]
    assert sr.from_link_status(connecting, backing) == [
        de.TransportStateChanged("backing-off", "connecting", 2, "refused"),
        de.ReconnectAttempt(2, 1.5, "refused"),
    ]
    assert sr.from_link_status(backing, backing) == []  # same state, same attempt: nothing new


def test_diff_tells_button_mute_turn_faults_then_led() -> None:
    before = sr.Observed(status="ready", pattern="on 0.2")
    after = sr.Observed(
        button_pressed=True,
        turn=True,
        status="listening",
        pattern="on",
        color=(0.0, 0.3, 1.0),
        text="listening",
    )
    # a debounced press is recognised by a timer, but it is the button's turn
    assert sr.diff(before, after, "timer") == [
        de.Button(True),
        de.TurnStarted("button"),
        de.Led("listening", "ready", "on", (0.0, 0.3, 1.0), "listening"),
    ]
    faulted = sr.Observed(status="fault", muted=True, faults=(("capture", "gone"),))
    assert sr.diff(sr.Observed(status="ready"), faulted, "capture") == [
        de.MuteChanged(True),
        de.AudioFault("capture", "gone"),
        de.Led("fault", "ready", "", (0.0, 0.0, 0.0), ""),
    ]
    assert sr.diff(faulted, sr.Observed(status="muted", muted=True), "capture")[0] == de.AudioFault(
        "capture", None
    )
    assert sr.diff(after, after, "x") == []
    assert sr.diff(after, sr.Observed(status="ready"), "timer")[:2] == [
        de.Button(False),
        de.TurnEnded("button"),
    ]
    long_turn = sr.Observed(turn=True, status="listening")
    assert sr.diff(long_turn, sr.Observed(status="thinking"), "timer")[0] == de.TurnEnded(
        "timer"
    )  # max_turn_s


def test_drop_counters_keep_their_names_in_the_status_document_and_grow_into_one_event() -> None:
    reporter = sr.StreamReporter()
    quiet = sr.DropCounters(outgoing_audio=2, messages=0, capture_overruns=None, subscribers_dropped=1)
    assert quiet.named() == {
        "link.dropped_outgoing_audio_total": 2,
        "link.dropped_messages_total": 0,
        "events.subscribers_dropped_total": 1,
    }
    assert reporter.drops(quiet) == [de.Drops(quiet.named())]  # from nothing to 2: grew
    assert reporter.drops(quiet) == []  # the same totals: no event
    more = sr.DropCounters(outgoing_audio=2, messages=0, capture_overruns=5, subscribers_dropped=1)
    assert reporter.drops(more) == [de.Drops({**quiet.named(), "audio.capture.overruns_total": 5})]
    # The names are the counters' places in the status document (`voiceterm status`), as they always were.
    assert len(sr.DROP_COUNTER_NAMES) == 9
    assert {name.split(".")[0] for name in sr.DROP_COUNTER_NAMES} == {"link", "audio", "daemon", "events"}


def test_the_reporter_relays_sessions_and_tells_each_link_change_once() -> None:
    from voiceterm.core.linkevents import SessionEnded, SessionStarted

    reporter = sr.StreamReporter()
    assert reporter.bot(SessionStarted(3, "ws://bot/ws")) == [de.Connected(3, "ws://bot/ws")]
    assert reporter.bot(SessionEnded(3, "closed", False)) == [de.Disconnected(3, "closed", False)]
    ready = LinkStatus(LinkState.READY)
    assert reporter.link(ready) == [de.TransportStateChanged("ready", None, 0, None)]
    assert reporter.link(ready) == []


def test_one_name_means_one_thing() -> None:
    """A stream event relaying a bot message is On<Message>; no stream event shares a protocol event's name."""
    from voiceterm.protocol import events, rtvi_events

    stream = {
        cls.__name__ for cls in vars(de).values() if isinstance(cls, type) and issubclass(cls, de.DeviceEvent)
    }
    protocol = {
        name
        for module in (rtvi_events, events)
        for name, cls in vars(module).items()
        if isinstance(cls, type) and cls.__module__ == module.__name__
    }
    assert "UserStartedSpeaking" in protocol and "OnUserStartedSpeaking" in stream
    assert stream & protocol == set()
    relayed = {type(sr.from_bot(_rtvi(cls.TYPE))).__name__ for cls in rtvi_events.EVENT_CLASSES}
    assert all(name.startswith("On") for name in relayed), relayed


def test_the_json_line() -> None:
    line = de.encode(de.OnUserTranscript("café ☕", True, "u", "t"), ts=1700000000.123456, seq=9)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "event": "user-transcript",
        "ts": 1700000000.123,
        "seq": 9,
        "text": "café ☕",
        "final": True,
        "user_id": "u",
        "timestamp": "t",
    }
    assert json.loads(de.encode(de.OnMetrics({"x": float("nan")}), ts=0, seq=1))["data"] == {"x": None}
    # A payload over the line limit is cut with a visible marker, and the line says so.
    huge = json.loads(de.encode(de.OnMetrics({"blob": "x" * (de.MAX_LINE_BYTES + 1)}), ts=0, seq=2))
    assert huge["truncated"] is True and huge["data"]["blob"].endswith("…[truncated]")
    assert len(huge["data"]["blob"]) < de.MAX_LINE_BYTES
    # Text that grows when escaped (a control character is six bytes of JSON) still cannot pass the limit.
    escaped = de.encode(de.OnMetrics({"blob": "\x01" * de.MAX_LINE_BYTES}), ts=0, seq=3)
    assert json.loads(escaped) == {"event": "metrics", "ts": 0, "seq": 3, "truncated": True}


def test_the_json_line_survives_what_a_bot_can_send() -> None:
    deep: object = "bottom"
    for _ in range(600):
        deep = {"a": deep}
    line = de.encode(
        de.OnServerMessage({"x": "\ud800", "deep": deep, "n": float("inf"), "big": 10**5000}), ts=0, seq=1
    )
    assert line.count(b"\n") == 1
    obj = json.loads(line.decode("utf-8"))  # strict UTF-8: the lone surrogate became U+FFFD
    assert obj["data"]["x"] == "\ufffd" and obj["data"]["n"] is None and obj["truncated"] is True
    assert obj["data"]["big"] == "…[truncated]"
    level, depth = obj["data"]["deep"], 1
    while isinstance(level, dict):
        level, depth = level["a"], depth + 1
    assert level == "…[truncated] nested too deep" and depth <= 32
    # Characters a line-splitting reader would break on stay escapes.
    assert b"\xe2\x80\xa8" not in de.encode(de.OnBotLlmText("a\u2028b"), ts=0, seq=2)


@given(st.text(max_size=200), st.booleans())
def test_any_text_is_one_strict_json_line(text: str, final: bool) -> None:
    line = de.encode(de.OnUserTranscript(text, final), ts=1.0, seq=1)
    assert line.count(b"\n") == 1 and json.loads(line)["text"] == text


def test_every_event_has_a_unique_name() -> None:
    classes = [
        c for c in vars(de).values() if isinstance(c, type) and issubclass(c, de.DeviceEvent) and c.NAME
    ]
    assert len({c.NAME for c in classes}) == len(classes) == len(de.EVENT_NAMES)


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ('{"cmd": "talk", "state": "start"}', cc.Talk(True)),
        ('{"cmd": "talk", "state": "stop", "id": 3}', cc.Talk(False)),
        ('{"cmd": "mute"}', cc.Mute(True)),
        ('{"cmd": "unmute"}', cc.Mute(False)),
        ('{"cmd": "toggle-mute"}', cc.Mute(None)),
        ('{"cmd": "volume"}', cc.Volume(None)),
        ('{"cmd": "volume", "percent": 62.6}', cc.Volume(63)),
        ('{"cmd": "send-text", "content": "hi", "audio_response": false}', cc.SendText("hi", True, False)),
        ('{"cmd": "reconnect"}', cc.Reconnect()),
        ('{"cmd": "status"}', cc.Status()),
        ('{"cmd": "help"}', cc.Help()),
        ('{"cmd": "subscribe"}', cc.Subscribe(None)),
        ('{"cmd": "subscribe", "events": ["led", "button"]}', cc.Subscribe(frozenset({"led", "button"}))),
        ('{"cmd": "unsubscribe"}', cc.Unsubscribe()),
    ],
)
def test_requests(line: str, command: cc.Command) -> None:
    assert cc.parse_request(line).command == command


def test_errors_carry_the_id_and_command_for_the_reply() -> None:
    with pytest.raises(cc.CommandError) as info:
        cc.parse_request('{"cmd": "volume", "id": "v1", "percent": -1}')
    assert (info.value.request_id, info.value.cmd) == ("v1", "volume")
    reply = json.loads(cc.reply_error("v1", "volume", str(info.value)))
    assert reply == {
        "reply": "volume",
        "id": "v1",
        "ok": False,
        "error": "percent -1 is out of range, use 0 to 400",
    }
    with pytest.raises(cc.CommandError, match="longer than"):
        cc.parse_request(b"{" + b" " * cc.MAX_REQUEST_BYTES + b"}")
    with pytest.raises(cc.CommandError, match="content longer than 4000"):
        cc.parse_request(json.dumps({"cmd": "send-text", "content": "x" * 4001}))
    assert set(cc.help_result()) == set(cc.COMMANDS)


@given(st.binary(max_size=300))
def test_garbage_is_a_command_error_never_a_crash(raw: bytes) -> None:
    try:
        cc.parse_request(raw)
    except cc.CommandError as e:
        assert "\n" not in str(e)


def test_requests_are_bounded_and_never_accepted_when_they_cannot_be_carried_out() -> None:
    with pytest.raises(cc.CommandError, match=f"nested deeper than {cc.MAX_REQUEST_DEPTH}"):
        cc.parse_request(b"[" * 16_000)  # was a RecursionError out of parse_request: exit 70
    with pytest.raises(cc.CommandError, match="nested deeper"):
        cc.parse_request('{"cmd": "status", "x": ' + "[" * 40 + "]" * 40 + "}")
    with pytest.raises(cc.CommandError, match="content is not valid Unicode") as info:
        cc.parse_request('{"cmd": "send-text", "id": 7, "content": "hi \\ud800"}')
    assert info.value.request_id == 7
    with pytest.raises(cc.CommandError, match="id must be"):
        cc.parse_request('{"cmd": "help", "id": "\\udfff"}')
    with pytest.raises(cc.CommandError, match="events is not valid Unicode"):
        cc.parse_request('{"cmd": "subscribe", "events": ["led", "\\ud800"]}')
    with pytest.raises(cc.CommandError, match="d is not valid Unicode"):  # anywhere in app data, too
        cc.parse_request('{"cmd": "status", "d": {"a": [1, {"\\udc00": 2}]}}')
    with pytest.raises(cc.CommandError, match="d holds inf, which is not a JSON number"):
        cc.parse_request('{"cmd": "status", "d": {"a": [1, 1e999]}}')
    request = cc.parse_request('{"cmd": "send-text", "content": "caf\\u00e9 \\ud83d\\ude00"}')
    assert request.command == cc.SendText("café 😀")  # a surrogate pair is a character, not a lone one
    reply = cc.reply_error("\u2028", "x\ud800", "line\u2029two")
    assert reply.count(b"\n") == 1 and json.loads(reply.decode("utf-8"))["reply"] == "x\ufffd"
