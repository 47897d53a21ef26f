"""The protobuf wire format of pipecat's `Frame` (frames.proto), by hand: pure Python, no protobuf runtime.

Five small message types travel on the socket, so the daemon reads and writes them itself instead of loading
google.protobuf and the generated module (about 3 MiB of memory and 10 ms of start-up on a desktop core; a
Pi Zero has 512 MiB and ten times less speed). The rules are protobuf's, and they are tested against the
generated module on random and mutated input (tests/protocol/test_pbwire.py): a field of an unexpected wire
type is an unknown field, unknown fields (groups included) are skipped, the last value of a scalar wins, a
message field seen twice is merged, another member of the `frame` oneof replaces the one before it, strings
must be UTF-8, and anything malformed (a truncated field, a varint over ten bytes, field number 0, wire
types 6 and 7, a stray or mismatched end of group) is a `WireError`. One rule is this module's own: at most
`MAX_FIELDS` fields per message body, so the cost of a hostile message is bounded.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = [
    "FRAME_FIELDS",
    "MAX_FIELDS",
    "WireError",
    "decode_frame",
    "encode_audio_frame",
    "encode_message_frame",
]

_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1
_MAX_GROUP_DEPTH = 100  # nested groups in an unknown field (protobuf's own recursion limit)
# Fields in one message body or group: a Frame has six at most, and a 1 MiB message of 2-byte fields would
# otherwise cost half a second of Python on the event loop. (protobuf itself has no such limit: a frame of
# thousands of unknown fields is refused here and would be read there; no sender makes one.)
MAX_FIELDS = 1000

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5

# The `frame` oneof: field number -> member name.
FRAME_FIELDS = {1: "text", 2: "audio", 3: "transcription", 4: "message", 5: "interruption"}

# Per member: field number -> (name, kind); kind "uint64", "uint32", "string" or "bytes".
_SCHEMA: dict[str, dict[int, tuple[str, str]]] = {
    "text": {1: ("id", "uint64"), 2: ("name", "string"), 3: ("text", "string")},
    "audio": {
        1: ("id", "uint64"),
        2: ("name", "string"),
        3: ("audio", "bytes"),
        4: ("sample_rate", "uint32"),
        5: ("num_channels", "uint32"),
        6: ("pts", "uint64"),
    },
    "transcription": {
        1: ("id", "uint64"),
        2: ("name", "string"),
        3: ("text", "string"),
        4: ("user_id", "string"),
        5: ("timestamp", "string"),
    },
    "message": {1: ("data", "string")},
    "interruption": {1: ("id", "uint64"), 2: ("name", "string")},
}
_DEFAULTS = {"uint64": 0, "uint32": 0, "string": "", "bytes": b""}


class WireError(ValueError):
    """Not a well-formed pipecat Frame; the message says what is wrong."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    end = len(data)
    for _ in range(10):
        if pos >= end:
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _MASK64, pos
        shift += 7
    raise WireError("varint longer than 10 bytes")


def _tag(data: bytes, pos: int) -> tuple[int, int, int]:
    """(field number, wire type, position after the tag)."""
    tag, pos = _varint(data, pos)
    if tag > _MASK32:
        raise WireError("tag over 32 bits")
    number, wire_type = tag >> 3, tag & 7
    if number == 0:
        raise WireError("field number 0")
    return number, wire_type, pos


def _skip(data: bytes, pos: int, number: int, wire_type: int, depth: int = 0) -> tuple[int, int]:
    """Read past one field's value: (its varint or fixed-width value, or 0; the position after it). A
    length-delimited value is data[end - length : end]: the caller slices it only if it wants it."""
    if wire_type == VARINT:
        return _varint(data, pos)
    if wire_type == LEN:
        length, pos = _varint(data, pos)
        end = pos + length
        if end > len(data):
            raise WireError("length-delimited field runs past the end")
        return length, end
    if wire_type in (I64, I32):
        end = pos + (8 if wire_type == I64 else 4)
        if end > len(data):
            raise WireError("fixed-width field runs past the end")
        return 0, end
    if wire_type == SGROUP:
        if depth >= _MAX_GROUP_DEPTH:
            raise WireError("groups nested too deep")
        for _ in range(MAX_FIELDS):
            if pos >= len(data):
                raise WireError("group without its end")
            inner, inner_type, pos = _tag(data, pos)
            if inner_type == EGROUP:
                if inner != number:
                    raise WireError("end of group does not match its start")
                return 0, pos
            _, pos = _skip(data, pos, inner, inner_type, depth + 1)
        raise WireError(f"group of more than {MAX_FIELDS} fields")
    if wire_type == EGROUP:
        raise WireError("end of group without its start")
    raise WireError(f"wire type {wire_type}")


def _fields(data: bytes) -> list[tuple[int, int, int, int]]:
    """Every field of a message body, in order: (number, wire type, value or length, end position).
    One-byte tags, varints and lengths (nearly all of them) are read inline: this runs for every message."""
    out = []
    pos = 0
    end = len(data)
    while pos < end:
        if len(out) >= MAX_FIELDS:
            raise WireError(f"more than {MAX_FIELDS} fields")
        tag = data[pos]
        if tag < 0x80 and tag >= 8:  # a one-byte tag of a field number from 1 to 15
            pos += 1
            number, wire_type = tag >> 3, tag & 7
        else:
            number, wire_type, pos = _tag(data, pos)
        if wire_type in (VARINT, LEN):
            value = 0
            shift = 0
            while True:  # the varint, inline (as _varint)
                if pos >= end or shift > 63:
                    raise WireError("truncated varint" if pos >= end else "varint longer than 10 bytes")
                byte = data[pos]
                pos += 1
                value |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
            value &= _MASK64
            if wire_type == LEN:
                pos += value
                if pos > end:
                    raise WireError("length-delimited field runs past the end")
        else:
            value, pos = _skip(data, pos, number, wire_type)
        out.append((number, wire_type, value, pos))
    return out


def _merge(kind: str, schema: dict[int, tuple[str, str]], body: bytes, out: dict[str, Any]) -> None:
    """Read one occurrence of a oneof member into `out` (the last value of each field wins)."""
    for number, wire_type, value, end in _fields(body):
        field = schema.get(number)
        if field is None:
            continue
        name, typ = field
        if typ in ("string", "bytes"):
            if wire_type != LEN:
                continue  # an unexpected wire type: an unknown field
            raw = body[end - value : end]
            if typ == "string":
                try:
                    out[name] = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise WireError(f"{kind}.{name} is not UTF-8") from None
            else:
                out[name] = raw
        elif wire_type == VARINT:
            out[name] = value & _MASK32 if typ == "uint32" else value


def decode_frame(data: bytes) -> tuple[str | None, dict[str, Any]]:
    """(member of the `frame` oneof or None, its fields) of one serialized Frame."""
    kind: str | None = None
    fields: dict[str, Any] = {}
    for number, wire_type, length, end in _fields(data):
        if number not in FRAME_FIELDS or wire_type != LEN:
            continue  # unknown, or an unexpected wire type
        if FRAME_FIELDS[number] != kind:
            # Another member replaces the one before it (which had to be well-formed all the same).
            kind = FRAME_FIELDS[number]
            schema = _SCHEMA[kind]
            fields = {name: _DEFAULTS[typ] for name, typ in schema.values()}
        _merge(kind, _SCHEMA[kind], data[end - length : end], fields)  # seen again: merged, last value wins
    return kind, fields


@lru_cache(maxsize=256)
def _varint_bytes(n: int) -> bytes:
    """Base-128 varint; cached (the same chunk lengths and rates come every time)."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_audio_frame(pcm: bytes, sample_rate: int, num_channels: int) -> bytes:
    """Frame{audio: AudioRawFrame{audio, sample_rate, num_channels}}, as protobuf serializes it."""
    head, tail = _audio_frame_parts(len(pcm), sample_rate, num_channels)
    return head + pcm + tail


@lru_cache(maxsize=64)
def _audio_frame_parts(n_bytes: int, sample_rate: int, num_channels: int) -> tuple[bytes, bytes]:
    """The bytes before and after `n_bytes` of audio in its frame; cached (every chunk is the same size)."""
    tail = b"".join(
        (
            b"\x20" + _varint_bytes(sample_rate) if sample_rate else b"",
            b"\x28" + _varint_bytes(num_channels) if num_channels else b"",
        )
    )
    field = b"\x1a" + _varint_bytes(n_bytes) if n_bytes else b""
    body_len = len(field) + n_bytes + len(tail)
    return b"\x12" + _varint_bytes(body_len) + field, tail


def encode_message_frame(text: str) -> bytes:
    """Frame{message: MessageFrame{data}}; UnicodeEncodeError for text that is not valid Unicode."""
    data = text.encode("utf-8")
    body = b"\x0a" + _varint_bytes(len(data)) + data if data else b""
    return b"\x22" + _varint_bytes(len(body)) + body
