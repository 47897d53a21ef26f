"""protocol.pbwire, the daemon's own protobuf codec for pipecat's Frame, against the generated module: the same
frames out, the same fields (or the same refusal) for valid, malformed and random input."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceterm.protocol import pbwire
from voiceterm_devkit import frames_pb2


def varint(n: int) -> bytes:
    """Base-128 varint, written here rather than taken from pbwire: the inputs must not share its bugs."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def by_protobuf(data: bytes) -> Any:
    """What the generated module reads: "error", or (oneof member, its fields) as pbwire names them."""
    try:
        frame = frames_pb2.Frame.FromString(data)
    except DecodeError:
        return "error"
    which = frame.WhichOneof("frame")
    if which is None:
        return None, {}
    member = getattr(frame, which)
    return which, {name: getattr(member, name) for name, _ in pbwire._SCHEMA[which].values()}


def by_pbwire(data: bytes) -> Any:
    try:
        return pbwire.decode_frame(data)
    except pbwire.WireError:
        return "error"


# A field as it may appear on the wire, malformed ones included: (number, wire type, payload).
NUMBERS = st.one_of(st.integers(0, 9), st.sampled_from([15, 16, 2**29 - 1, 2**29, 2**32]))


def encode_field(number: int, wire_type: int, payload: int | bytes) -> bytes:
    tag = varint((number << 3) | wire_type)
    raw = payload if isinstance(payload, bytes) else (payload & (2**64 - 1)).to_bytes(8, "little")
    if wire_type == 0:
        return tag + varint(payload if isinstance(payload, int) else len(payload))
    if wire_type == 1:
        return tag + raw[:8].ljust(8, b"\x00")
    if wire_type == 2:
        return tag + varint(len(raw)) + raw
    if wire_type == 5:
        return tag + raw[:4].ljust(4, b"\x00")
    return tag  # 3, 4: group start/end; 6, 7: invalid


def fields(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    one = st.tuples(
        NUMBERS,
        st.integers(0, 7),
        st.one_of(st.integers(0, 2**70), st.binary(max_size=12), children),
    ).map(lambda f: encode_field(*f))
    return st.lists(one, max_size=8).map(b"".join)


MESSAGES = st.recursive(st.binary(max_size=16), fields, max_leaves=20)


# The run before the first commit: 30,000 examples each of these two, no difference. CI runs a slice.
@settings(max_examples=400, deadline=None)
@given(MESSAGES)
def test_structured_and_malformed_frames_read_alike(data: bytes) -> None:
    assert by_pbwire(data) == by_protobuf(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_read_alike(data: bytes) -> None:
    assert by_pbwire(data) == by_protobuf(data)


@settings(max_examples=150, deadline=None)
@given(
    st.binary(max_size=3000).filter(lambda b: len(b) % 2 == 0),
    st.integers(1, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 200),
    st.integers(1, 40),
)
def test_mutated_real_frames_read_alike(pcm: bytes, rate: int, channels: int, flip: int, cut: int) -> None:
    real = frames_pb2.Frame(
        audio=frames_pb2.AudioRawFrame(audio=pcm, sample_rate=rate, num_channels=channels, pts=7)
    ).SerializeToString()
    assert by_pbwire(real) == by_protobuf(real)
    flipped = bytearray(real)
    flipped[flip % len(real)] ^= 0xFF
    assert by_pbwire(bytes(flipped)) == by_protobuf(bytes(flipped))
    assert by_pbwire(real[:-cut]) == by_protobuf(real[:-cut])
    twice = real + frames_pb2.Frame(message=frames_pb2.MessageFrame(data="x")).SerializeToString() + real
    assert by_pbwire(twice) == by_protobuf(twice)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000).filter(lambda b: len(b) % 2 == 0), st.integers(1, 2**32 - 1))
def test_audio_frames_encode_exactly_as_protobuf_does(pcm: bytes, rate: int) -> None:
    expected = frames_pb2.Frame(
        audio=frames_pb2.AudioRawFrame(audio=pcm, sample_rate=rate, num_channels=1)
    ).SerializeToString()
    assert pbwire.encode_audio_frame(pcm, rate, 1) == expected


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_message_frames_encode_exactly_as_protobuf_does(text: str) -> None:
    try:
        expected = frames_pb2.Frame(message=frames_pb2.MessageFrame(data=text)).SerializeToString()
    except ValueError:  # lone surrogates
        with pytest.raises(ValueError):
            pbwire.encode_message_frame(text)
        return
    assert pbwire.encode_message_frame(text) == expected


def test_every_member_and_field_reads_back() -> None:
    frames = [
        frames_pb2.Frame(text=frames_pb2.TextFrame(id=3, name="n", text="héllo")),
        frames_pb2.Frame(
            transcription=frames_pb2.TranscriptionFrame(
                id=1, name="t", text="words", user_id="u1", timestamp="2026-01-01T00:00:00"
            )
        ),
        frames_pb2.Frame(message=frames_pb2.MessageFrame(data='{"label": "rtvi-ai"}')),
        frames_pb2.Frame(interruption=frames_pb2.InterruptionFrame(id=2**64 - 1, name="i")),
        frames_pb2.Frame(
            audio=frames_pb2.AudioRawFrame(audio=b"\x01\x02", sample_rate=24000, num_channels=2)
        ),
        frames_pb2.Frame(),
    ]
    for frame in frames:
        data = frame.SerializeToString()
        assert pbwire.decode_frame(data) == by_protobuf(data)


def test_a_message_of_too_many_fields_is_refused_at_a_bounded_cost() -> None:
    unknown = encode_field(9, 0, 1)  # 2 bytes each: a 1 MiB message would hold half a million
    assert pbwire.decode_frame(unknown * pbwire.MAX_FIELDS) == (None, {})
    with pytest.raises(pbwire.WireError, match="more than"):
        pbwire.decode_frame(unknown * (pbwire.MAX_FIELDS + 1))
    group = encode_field(9, 3, b"") + unknown * (pbwire.MAX_FIELDS + 1) + encode_field(9, 4, b"")
    with pytest.raises(pbwire.WireError, match="group of more than"):
        pbwire.decode_frame(group)
