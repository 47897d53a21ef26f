"""A malicious bot against the real daemon: every item of issue 13 a bot can do, and a grab bag of evil
contents in valid pipecat frames. One daemon serves the module (see conftest.py); each case attacks it with
a subscriber attached and ends with `check_healthy` (still up, no traceback, no forged line, the subscriber
still there with strict JSON only, mic audio reaches the real bot, RSS within a few MiB).
"""

from __future__ import annotations

import json
import math
import re
import time

import pytest

from voiceterm_devkit import frames_pb2
from voiceterm_devkit.hostile_bot import audio, message, nested, nested_json, rtvi

from .conftest import Hostile

pytestmark = pytest.mark.bot

SPK_RATE = 24000


def deep_list(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


def garbage_total(env: Hostile) -> int:
    snap = env.daemon.status()
    assert snap is not None
    return snap["link"]["garbage_frames_total"]


def wait_garbage(env: Hostile, total: int, timeout: float = 10.0) -> None:
    env.daemon.wait_status(
        lambda s: s["link"]["garbage_frames_total"] >= total, timeout, f"{total} counted garbage frames"
    )


def test_lone_surrogates_reach_the_subscriber_as_valid_utf8(hostile: Hostile) -> None:
    """Before: UnicodeEncodeError in the event encoder, exit 70."""
    hostile.wait_ready()
    mark = hostile.tap.mark()
    hostile.relay.send(
        rtvi("server-message", {"x": "\ud800", "\udfff": ["\udc80"]}),
        rtvi("bot-llm-text", {"text": "a\ud800b"}),
        rtvi("bot-output", {"text": "\udbff", "spoken": True}),
        rtvi("user-transcription", {"text": "\ud83d", "final": True}),
    )
    msg = hostile.tap.wait_for(lambda e: e["event"] == "server-message", 10, mark)
    assert msg["data"] == {"x": "\ufffd", "\ufffd": ["\ufffd"]}
    text = hostile.tap.wait_for(lambda e: e["event"] == "bot-llm-text", 10, mark)
    assert text["text"] == "a\ufffdb"
    hostile.tap.wait_for(lambda e: e["event"] == "user-transcript" and e["text"] == "\ufffd", 10, mark)
    hostile.check_healthy()


def test_deep_nesting_is_dropped_or_cut_with_a_marker(hostile: Hostile) -> None:
    """Before: RecursionError in the encoder at 600 levels, exit 70."""
    hostile.wait_ready()
    garbage = garbage_total(hostile)
    mark = hostile.tap.mark()
    hostile.relay.send(
        message(nested_json(600)),  # over the decoder's 64 levels: counted and dropped
        message(nested_json(100_000)),
        rtvi("server-message", nested(50)),  # decoded, and cut at 32 levels in the event line
        rtvi("metrics", {"deep": deep_list(40)}),
    )
    event = hostile.tap.wait_for(lambda e: e["event"] == "server-message", 10, mark)
    assert event["truncated"] is True
    level = event["data"]
    while isinstance(level, dict):
        level = level["a"]
    assert level.endswith("nested too deep")
    hostile.tap.wait_for(lambda e: e["event"] == "metrics" and e.get("truncated"), 10, mark)
    wait_garbage(hostile, garbage + 2)
    hostile.check_healthy()


@pytest.mark.parametrize(
    "pcm_bytes",
    [
        64 * 1024,  # before: soxr x24,000 on the trio thread, 3.7 GiB and a 10 s stall (the link dropped)
        (1 << 20) - 64,  # before: MemoryError, exit 70
    ],
)
def test_audio_at_1_hz_is_counted_and_dropped(hostile: Hostile, pcm_bytes: int) -> None:
    hostile.wait_ready()
    garbage, session = garbage_total(hostile), hostile.session()
    hostile.relay.send(audio(bytes(pcm_bytes), 1))
    wait_garbage(hostile, garbage + 1)
    assert hostile.session() == session  # the session goes on
    hostile.check_healthy()


def test_audio_in_any_other_format_no_bot_means_is_counted_and_dropped(hostile: Hostile) -> None:
    hostile.wait_ready()
    garbage, session = garbage_total(hostile), hostile.session()
    formats = [
        (7999, 1),
        (48001, 1),
        (384_000, 1),
        (2**32 - 1, 1),
        (24000, 0),
        (24000, 3),
        (24000, 2**32 - 1),
    ]
    hostile.relay.send(*(audio(bytes(6 * 1024), rate, channels) for rate, channels in formats))
    wait_garbage(hostile, garbage + len(formats))
    assert hostile.session() == session
    hostile.check_healthy()


def test_resampling_work_is_bounded_by_the_playout_cap(hostile: Hostile) -> None:
    """A legal rate in the biggest message: 8 kHz, nearly 1 MiB (33 s), resampled to 24 kHz. Only what the
    playout cap holds is resampled; the rest is counted as dropped and the books still balance."""
    hostile.wait_ready()
    before = hostile.daemon.status()
    assert before is not None
    pcm = bytes((1 << 20) - 64)
    hostile.relay.send(audio(pcm, 8000, 1))
    n_frames = len(pcm) // 2 * SPK_RATE // 8000

    def arrived(s: dict) -> bool:
        return s["audio"]["playback"]["frames_in_total"] - before["audio"]["playback"]["frames_in_total"] >= (
            n_frames - SPK_RATE  # the resampler's filter holds a little back
        )

    after = hostile.daemon.wait_status(arrived, 10, "the big chunk in the speaker's books")
    dropped = (
        after["audio"]["playback"]["dropped_frames_total"]
        - before["audio"]["playback"]["dropped_frames_total"]
    )
    assert dropped >= n_frames - 3 * SPK_RATE  # at most the 3 s cap was kept
    hostile.check_healthy()


def test_bot_error_text_and_close_reason_cannot_forge_journal_lines(hostile: Hostile) -> None:
    hostile.wait_ready()
    forged_error = "12:00:00 ERROR voiceterm.link: FORGED by the bot's error text"
    forged_close = "12:00:00 ERROR voiceterm: FORGED by a close reason"
    hostile.fed += [forged_error, forged_close]
    mark = hostile.tap.mark()
    hostile.relay.send(rtvi("error", {"error": f"boom\n{forged_error}\r\n\x1b[31m", "fatal": False}))
    event = hostile.tap.wait_for(lambda e: e["event"] == "error", 10, mark)
    assert forged_error in event["message"]  # the subscriber gets the text as it was (valid JSON)
    session = hostile.session()
    hostile.relay.close(4000, f"bye\n{forged_close}")
    hostile.relay.wait_session(session + 1, 15)
    hostile.check_healthy()


def test_status_lines_are_throttled_when_a_bot_flaps_speaking(hostile: Hostile) -> None:
    """Before: 8 `status` lines a second for 20 ms of audio every 250 ms."""
    hostile.wait_ready()
    log_mark, tap_mark = hostile.log_mark(), hostile.tap.mark()
    chunk = audio(bytes(2 * SPK_RATE // 50), SPK_RATE)  # 20 ms
    started = time.monotonic()
    hostile.relay.send_paced([chunk] * 12, 0.25)
    elapsed = time.monotonic() - started
    hostile.tap.wait_for(lambda e: e["event"] == "led" and e["status"] == "speaking", 10, tap_mark)
    status_lines = [line for line in hostile.log_since(log_mark) if re.search(r": status status=", line)]
    print(f"\n{len(status_lines)} status lines in {elapsed:.1f} s of a flapping bot")
    # Each change (ready -> speaking, speaking -> ready) at most once per 10 s, plus the first of each.
    assert len(status_lines) <= 2 * (1 + math.ceil(elapsed / 10)), status_lines
    hostile.check_healthy()


def test_a_grab_bag_of_evil_contents(hostile: Hostile) -> None:
    """Every RTVI type with wrong types, non-finite and huge numbers, long strings, unknown types; frames
    with extreme fields; text frames. All either delivered as strict JSON or counted as garbage."""
    hostile.wait_ready()
    mark = hostile.tap.mark()
    evil_values = [
        None,
        True,
        -(2**63),
        2**64 + 1,
        10**4000,
        float("nan"),
        float("inf"),
        -1e308,
        "",
        "\x00\x1b]0;pwned\x07\u202e\u2028\x85",
        "x" * 200_000,
        [],
        [None] * 2000,
        {"": {"": {}}},
        nested(63),
    ]
    types = [
        "bot-ready",
        "error",
        "error-response",
        "server-response",
        "server-message",
        "user-started-speaking",
        "bot-started-speaking",
        "bot-stopped-speaking",
        "bot-interrupted",
        "user-transcription",
        "user-input",
        "bot-output",
        "bot-llm-text",
        "bot-tts-text",
        "bot-transcription",
        "metrics",
        "user-audio-level",
        "llm-function-call",
        "llm-function-call-in-progress",
        "llm-function-call-stopped",
        "a-type-from-the-future",
        "\u202eevil\nline",
    ]
    fields = ["text", "error", "fatal", "t", "d", "version", "about", "segment_id", "value", "args", "final"]
    frames: list[bytes | str] = []
    for i, msg_type in enumerate(types):
        for j, value in enumerate(evil_values):
            field = fields[(i + j) % len(fields)]
            if msg_type == "error" and field == "fatal" and value is True:
                continue  # a fatal error ends the session by design: its own case below
            frames.append(rtvi(msg_type, {field: value}, msg_id="x" * (j * 20)))
            frames.append(rtvi(msg_type, value))
    frames += [
        rtvi(["not", "a", "string"]),
        rtvi("server-message", msg_id=12),
        rtvi("server-message", label={"rtvi": "ai"}),
        message("[" * 64 + "]" * 64),
        message("1" * 5000),
        message("NaN"),
        message('"\\ud800"'),
        message(""),
        b"",
        b"\xff" * 1000,
        frames_pb2.Frame(text=frames_pb2.TextFrame(text="\x1b[2J" * 1000, id=2**64 - 1)).SerializeToString(),
        frames_pb2.Frame(
            transcription=frames_pb2.TranscriptionFrame(text="t\n", user_id="\x00" * 100, timestamp="\u2028")
        ).SerializeToString(),
        frames_pb2.Frame(interruption=frames_pb2.InterruptionFrame(id=2**64 - 1)).SerializeToString(),
        audio(b"", 24000),
        audio(b"\x01", 24000),
        audio(bytes(4), 48000, 2),
        "a text WebSocket message: protobuf mode expects binary",
        json.dumps({"label": "rtvi-ai", "type": "server-message"}),
    ]
    garbage = garbage_total(hostile)
    hostile.relay.send_paced(frames, 0.002)  # paced a little: the subscriber is a reader, not a sink
    hostile.relay.send(rtvi("server-message", {"done": True}))
    hostile.tap.wait_for(lambda e: e["event"] == "server-message" and e["data"] == {"done": True}, 30, mark)
    assert garbage_total(hostile) > garbage
    hostile.check_healthy()


def test_a_fatal_error_with_evil_text(hostile: Hostile) -> None:
    """The bot says its pipeline stopped, in words meant to break the journal and the terminal: the session
    may end (the bot is of no use any more), the daemon reconnects and goes on."""
    hostile.wait_ready()
    forged = "12:00:00 ERROR voiceterm: FORGED by a fatal error"
    hostile.fed.append(forged)
    mark = hostile.tap.mark()
    hostile.relay.send(rtvi("error", {"error": f"\x1b[2J\n{forged}\u2028\ud800", "fatal": True}))
    event = hostile.tap.wait_for(lambda e: e["event"] == "error", 10, mark)
    assert event["fatal"] is True and "\ufffd" in event["message"]
    hostile.check_healthy()
