"""Structure-aware fuzzing of everything the daemon receives, with hypothesis.

Three properties, each driving the daemon's own pure code the way the running daemon does:

- `check_frame`: one WebSocket message from the bot through the whole receive path: the protobuf codec,
  the RTVI parser, the terminal brain, the audio path (resampler bounded by the playout cap, playout
  buffer) and the event encoder, to the JSON line a subscriber reads. The codec may refuse the message
  (ProtocolError, counted and dropped by the link); nothing else may raise, and every line must be one
  object of strict UTF-8 JSON within the line limit.
- `check_twilio`: the same for Twilio media-stream text messages.
- `check_request`: one line from a local socket client through the control parser: CommandError or a
  request, and a reply line of strict JSON either way.

The strategies generate server messages of every RTVI type with valid and hostile contents (lone
surrogates, deep nesting, huge and non-finite numbers, wrong types, unknown types, long strings), protobuf
frames with extreme field values (sample rates 0 to 2**32-1, any channel count, odd sizes, 64-bit ids),
mutated and random bytes, and control requests of every command with generated arguments.

`python -m voiceterm_devkit.fuzz --examples N` (what `scripts/fuzz` runs) tries N examples of each
property and prints how many messages were tried, how long it took and how many escaped (the goal: 0).
tests/test_fuzz.py runs a fast slice of the same properties in CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voiceterm.config import Config
from voiceterm.core import control_commands as cc
from voiceterm.core import device_events as de
from voiceterm.core import stream_reporter as sr
from voiceterm.core.playout import PlayoutBuffer
from voiceterm.core.resample import StreamResampler
from voiceterm.core.terminal import Terminal
from voiceterm.protocol import rtvi, rtvi_parse
from voiceterm.protocol.base import Serializer, encode_json
from voiceterm.protocol.errors import ProtocolError
from voiceterm.protocol.events import AudioChunk
from voiceterm.protocol.protobuf import ProtobufSerializer
from voiceterm.protocol.twilio import TwilioSerializer
from voiceterm_devkit import frames_pb2

__all__ = [
    "check_frame",
    "check_request",
    "check_twilio",
    "control_lines",
    "protobuf_messages",
    "rtvi_frames",
    "twilio_messages",
]

SPEAKER_RATE = 24000
CAP_FRAMES = 3 * SPEAKER_RATE  # the default playout cap, 3 s


# --- strategies --------------------------------------------------------------------------------------------

# Every code point, lone surrogates included (hypothesis leaves those out by default).
any_char = st.characters(codec=None, categories=None)
texts = st.one_of(
    st.text(any_char, max_size=40),
    st.sampled_from(["", "\ud800", "a\udfffb", "\x00\n\r\x1b[2J\u2028\u2029\u202e\x85", "é☕𝄞"]),
    st.integers(0, 70_000).map(lambda n: "x" * n),
)
numbers = st.one_of(
    st.integers(),
    st.integers(-(10**400), 10**400),
    st.sampled_from([0, -1, 2**53 + 1, 2**63, 2**64, -(2**63) - 1, 10**4000]),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)


def _nest(depth: int, leaf: Any, as_list: bool) -> Any:
    for _ in range(depth):
        leaf = [leaf] if as_list else {"a": leaf}
    return leaf


# Mostly around the limits (64 levels decoded, 32 kept in an event line), sometimes far beyond.
deep_values = st.builds(
    _nest, st.one_of(st.integers(0, 70), st.sampled_from([100, 600, 1200])), scalars, st.booleans()
)
json_values = st.one_of(
    deep_values,
    st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=6),
            st.dictionaries(st.text(any_char, max_size=8), children, max_size=6),
        ),
        max_leaves=30,
    ),
)

RTVI_TYPES = sorted(rtvi_parse.BY_TYPE)  # every type the parser knows
FIELD_NAMES = sorted({name for _cls, fields in rtvi_parse.BY_TYPE.values() for name, _kind in fields})
objects = st.dictionaries(st.text(any_char, max_size=8), json_values, max_size=6)
# Values that fit a field's kind (so the message parses into its typed event) with hostile contents.
FITTING = {
    "str": texts,
    "str?": st.one_of(st.none(), texts),
    "bool": st.booleans(),
    "bool?": st.one_of(st.none(), st.booleans()),
    "int?": st.one_of(st.none(), numbers),
    "number": numbers,
    "object?": st.one_of(st.none(), objects),
    "any": json_values,
}


@st.composite
def rtvi_envelopes(draw: st.DrawFn) -> Any:
    """An RTVI server message of any type: mostly well-formed envelopes whose fields have the right JSON
    type and hostile contents, some with wrong types, unknown types or a broken envelope."""
    msg_type = draw(st.one_of(st.sampled_from(RTVI_TYPES), st.sampled_from(RTVI_TYPES), texts))
    envelope: dict[str, Any] = {"label": "rtvi-ai", "type": msg_type}
    known = rtvi_parse.BY_TYPE.get(msg_type)
    data: dict[str, Any] = {}
    for name, kind in known[1] if known else ():
        if draw(st.booleans()) or draw(st.booleans()):
            wrong = draw(st.sampled_from([False, False, False, True]))  # now and then a value of any type
            data[name] = draw(json_values if wrong else FITTING[kind])
    data.update(draw(st.dictionaries(texts, json_values, max_size=2)))
    envelope["data"] = data
    if draw(st.booleans()):
        envelope["id"] = draw(st.one_of(texts, st.integers()))
    breakage = draw(st.sampled_from(["none"] * 6 + ["label", "type", "data", "id", "app"]))
    if breakage == "label":
        envelope["label"] = draw(scalars)
    elif breakage == "type":
        envelope["type"] = draw(json_values)
    elif breakage == "data":
        envelope["data"] = draw(json_values)
    elif breakage == "id":
        envelope["id"] = draw(json_values)
    elif breakage == "app":
        return draw(json_values)  # not an envelope at all: an app message
    return envelope


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


def _deep_text(depth: int) -> str:
    return '{"label":"rtvi-ai","type":"server-message","data":' + "[" * depth + "]" * depth + "}"


message_texts = st.one_of(
    st.integers(0, 200_000).map(_deep_text),
    st.text(any_char, max_size=200).filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)),
    st.sampled_from(["NaN", "1" * 5000, "[" * 70 + "]" * 70, '"\\ud800"', "{", ""]),
)
rtvi_frames = rtvi_envelopes().map(
    lambda envelope: frames_pb2.Frame(
        message=frames_pb2.MessageFrame(data=_json_text(envelope))
    ).SerializeToString()
)

RATES = [0, 1, 7999, 8000, 11025, 16000, 22050, 24000, 44100, 48000, 48001, 96000, 384000, 2**31, 2**32 - 1]
uint32 = st.one_of(st.sampled_from(RATES), st.integers(0, 2**32 - 1))
uint64 = st.one_of(st.sampled_from([0, 1, 2**63, 2**64 - 1]), st.integers(0, 2**64 - 1))
protobuf_strings = st.text(any_char, max_size=100).map(lambda t: t.encode("utf-8", "replace").decode())


@st.composite
def protobuf_frames(draw: st.DrawFn) -> bytes:
    """One well-formed pipecat Frame of any case, with extreme field values."""
    case = draw(st.sampled_from(["audio", "message", "text", "transcription", "interruption", "empty"]))
    if case == "audio":
        pcm = draw(st.one_of(st.binary(max_size=4000), st.integers(0, 1 << 20).map(bytes)))
        channels = draw(st.one_of(st.sampled_from([0, 1, 2, 3, 8]), uint32))
        frame = frames_pb2.AudioRawFrame(
            id=draw(uint64),
            name=draw(protobuf_strings),
            audio=pcm,
            sample_rate=draw(uint32),
            num_channels=channels,
        )
        if draw(st.booleans()):
            frame.pts = draw(uint64)
        return frames_pb2.Frame(audio=frame).SerializeToString()
    if case == "message":
        return frames_pb2.Frame(message=frames_pb2.MessageFrame(data=draw(message_texts))).SerializeToString()
    if case == "text":
        text = frames_pb2.TextFrame(id=draw(uint64), name=draw(protobuf_strings), text=draw(protobuf_strings))
        return frames_pb2.Frame(text=text).SerializeToString()
    if case == "transcription":
        t = frames_pb2.TranscriptionFrame(
            id=draw(uint64),
            text=draw(protobuf_strings),
            user_id=draw(protobuf_strings),
            timestamp=draw(protobuf_strings),
        )
        return frames_pb2.Frame(transcription=t).SerializeToString()
    if case == "interruption":
        return frames_pb2.Frame(
            interruption=frames_pb2.InterruptionFrame(id=draw(uint64))
        ).SerializeToString()
    return b""


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A valid frame with a few bytes flipped, cut or spliced: what a broken encoder or a bit error sends."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


protobuf_messages = st.one_of(
    protobuf_frames(),
    mutated(protobuf_frames()),
    mutated(rtvi_frames),
    st.binary(max_size=300),
    st.text(max_size=50),  # a text WebSocket message where binary ones are expected
)

twilio_messages = st.one_of(
    st.builds(
        lambda payload, event: _json_text({"event": event, "media": {"payload": payload}}),
        st.one_of(st.binary(max_size=3000).map(lambda b: __import__("base64").b64encode(b).decode()), texts),
        st.sampled_from(["media", "clear", "mark", "stop", "start"]),
    ),
    json_values.map(_json_text),
    st.text(any_char, max_size=100),
    st.binary(max_size=100),
)

COMMAND_NAMES = sorted(cc.COMMANDS)
ARG_NAMES = sorted({arg for args, _help in cc.COMMANDS.values() for arg in args})


@st.composite
def control_lines(draw: st.DrawFn) -> bytes:
    """One request line: mostly objects naming a real command with generated arguments, some garbage."""
    request: dict[str, Any] = {"cmd": draw(st.one_of(st.sampled_from(COMMAND_NAMES), texts, json_values))}
    if draw(st.booleans()):
        request["id"] = draw(st.one_of(texts, numbers, json_values))
    request.update(
        draw(st.dictionaries(st.one_of(st.sampled_from(ARG_NAMES), texts), json_values, max_size=4))
    )
    line = _json_text(request).encode()
    return draw(
        st.one_of(
            st.just(line),
            st.just(line),
            st.binary(max_size=200),
            st.integers(0, 40_000).map(lambda n: b"[" * n),
            mutated(st.just(line)),
        )
    )


# --- the properties ----------------------------------------------------------------------------------------


class ReceivePath:
    """The pure half of the daemon's receive path, wired as app.py wires it."""

    def __init__(self) -> None:
        self.terminal = Terminal(Config(), 0.0)
        self.resampler = StreamResampler(SPEAKER_RATE, max_output_frames=CAP_FRAMES)
        self.playout = PlayoutBuffer(preroll_frames=1440, cap_frames=CAP_FRAMES, underrun_window_frames=12000)
        self.now = 0.0
        self.seq = 0

    def feed(self, events: list[Any]) -> None:
        for event in events:
            self.now += 0.01
            if isinstance(event, AudioChunk):
                self._audio(event)
                continue
            self.terminal.bot(event, self.now)
            assert self.terminal.state().view.name  # what the app reads after every input must resolve
            stream_event = sr.from_bot(event)
            if stream_event is not None:
                self.seq += 1
                check_line(de.encode(stream_event, ts=time.time(), seq=self.seq))

    def _audio(self, chunk: AudioChunk) -> None:
        import numpy as np

        frames = np.frombuffer(chunk.pcm, dtype="<i2")
        if chunk.num_channels > 1:
            frames = np.rint(frames.reshape(-1, chunk.num_channels).mean(axis=1)).astype("<i2")
        out = self.resampler.process(frames, chunk.sample_rate)
        # The bound: one chunk never costs more than the cap (plus the filter's small delayed tail).
        assert out.shape[0] <= CAP_FRAMES + SPEAKER_RATE, out.shape
        self.playout.push(out.astype("<i2").tobytes())
        self.playout.pull(480)


def _strict_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def check_line(line: bytes) -> dict[str, Any]:
    """A subscriber's view: one line, strict UTF-8, one JSON object, no NaN, within the limit."""
    assert line.endswith(b"\n") and line.count(b"\n") == 1, line[:200]
    assert len(line) <= de.MAX_LINE_BYTES + 1
    obj = json.loads(line.decode("utf-8"), parse_constant=_strict_constant)
    assert isinstance(obj, dict)
    return obj


def _receive(serializer: Serializer, data: bytes | str) -> None:
    try:
        events = serializer.decode(data)
    except ProtocolError:
        return  # refused: the link counts it and drops it
    ReceivePath().feed(events)


def check_frame(data: bytes | str) -> None:
    _receive(ProtobufSerializer(), data)


def check_twilio(data: bytes | str) -> None:
    _receive(TwilioSerializer(), data)


def check_request(line: bytes) -> None:
    try:
        request = cc.parse_request(line)
    except cc.CommandError as e:
        reply = check_line(cc.reply_error(e.request_id, e.cmd, str(e)))
        assert reply["ok"] is False
        return
    check_line(cc.reply_ok(request.id, request.cmd, {"echo": repr(request.command)}))
    # An accepted request must be one that can be carried out: whatever it carries can go to the bot as JSON
    # (an ok is never followed by a refusal to encode).
    fields = {
        name: sorted(value) if isinstance(value, frozenset) else value
        for name, value in dataclasses.asdict(request.command).items()
    }
    encode_json(fields, "request").encode("utf-8")
    if isinstance(request.command, cc.SendText):
        ProtobufSerializer().encode_message(rtvi.send_text(request.command.content))


PROPERTIES: dict[str, tuple[Callable[[Any], None], st.SearchStrategy[Any]]] = {
    "rtvi messages": (check_frame, rtvi_frames),
    "protobuf frames": (check_frame, protobuf_messages),
    "twilio messages": (check_twilio, twilio_messages),
    "control requests": (check_request, control_lines()),
}


def run_property(name: str, examples: int, *, seed: int | None = None) -> tuple[int, BaseException | None]:
    """Try `examples` examples of one property; (examples tried, the escape hypothesis shrank, or None)."""
    check, strategy = PROPERTIES[name]
    tried = 0

    def counted(value: Any) -> None:
        nonlocal tried
        tried += 1
        check(value)

    test = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=seed is None,
        suppress_health_check=list(HealthCheck),
    )(given(strategy)(counted))
    if seed is not None:
        from hypothesis import seed as with_seed

        test = with_seed(seed)(test)
    try:
        test()
    except Exception as e:  # the property failed: an exception escaped (hypothesis printed the example)
        return tried, e
    return tried, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m voiceterm_devkit.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--examples", type=int, default=20_000, help="examples per property (default 20000)")
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed (default: a fixed derandomized run)"
    )
    args = parser.parse_args(argv)
    total = escapes = 0
    started = time.monotonic()
    for name in PROPERTIES:
        t0 = time.monotonic()
        tried, escape = run_property(name, args.examples, seed=args.seed)
        total += tried
        escapes += escape is not None
        rate = tried / max(time.monotonic() - t0, 1e-9)
        verdict = "ok" if escape is None else f"ESCAPE: {type(escape).__name__}: {escape}"
        print(f"{name:18} {tried:>9,} tried  {rate:>8,.0f}/s  {verdict}", flush=True)
    elapsed = time.monotonic() - started
    minutes = math.floor(elapsed / 60)
    print(
        f"total: {total:,} messages tried in {minutes} min {elapsed - 60 * minutes:.0f} s, escapes: {escapes}"
    )
    return 1 if escapes else 0


if __name__ == "__main__":
    sys.exit(main())
