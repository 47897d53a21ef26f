"""JSON at the daemon's edges: bounded parsing of untrusted text, and output that is always valid JSON.

In: `loads` parses what a bot, a start endpoint or a socket client sent with bounded size, depth and cost,
and raises only `JSONRejected` (a ValueError naming the kind of problem, never quoting the payload).

Out: `sanitize` turns any value into one that `dumps_line` can always encode as one line of strict UTF-8
JSON: lone surrogates become U+FFFD, non-finite floats null, nesting and total size are bounded, and what is
cut is replaced by a visible marker instead of failing the whole line. Pure: no I/O.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "TRUNCATED",
    "JSONRejected",
    "Sanitizer",
    "clean_text",
    "dumps_line",
    "has_lone_surrogate",
    "loads",
    "sanitize",
]

MAX_DEPTH = 64  # nesting a message may have; pipecat's messages nest 3 or 4 levels
OUTPUT_DEPTH = 32  # nesting kept in what the daemon re-encodes for others; deeper is cut with a marker
OUTPUT_BUDGET = 64 * 1024  # characters of strings and scalars kept in one re-encoded value
TRUNCATED = "…[truncated]"
MAX_INT_BITS = 4096  # about 1233 digits: far below the interpreter's int<->str limit (4300 digits)

_SURROGATE = re.compile("[\ud800-\udfff]")
# A JSON string, for a text already known to be valid JSON (so every match succeeds at once); the unrolled
# form has no nested repeat, so a long string costs one linear scan and no backtracking state.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# What JSON allows raw inside a string but a reader could trip on: line ends of str.splitlines (NEL, the
# Unicode line and paragraph separators), DEL and the C1 controls a terminal obeys (CSI is \x9b), and the
# bidirectional overrides that reorder what a person reads. Written as escapes, so one event is always one
# line and printing a line cannot drive a terminal; the JSON value is the same.
_UNSAFE_IN_LINE = {
    c: f"\\u{c:04x}"
    for c in (0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
}


class JSONRejected(ValueError):
    """Untrusted JSON that is not accepted; `kind` is "invalid", "too large" or "too deep"."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{_WORDS[kind]} ({detail})")
        self.kind = kind


_WORDS = {"invalid": "invalid JSON", "too large": "JSON too large", "too deep": "JSON nested too deep"}


# --- in ---------------------------------------------------------------------------------------------------


def loads(text: str | bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value in `text`, or JSONRejected: over `max_bytes`, nested deeper than `max_depth`, or not
    valid JSON (syntax, bad UTF-8, an integer over the interpreter's digit limit).

    Cost is linear in the size: the C parser does the work, and the depth is measured without recursion.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        if len(text) > max_bytes:
            raise JSONRejected("too large", f"{len(text)} bytes, over {max_bytes}")
        try:
            text = bytes(text).decode("utf-8")  # JSON on the wire is UTF-8 (RFC 8259), nothing else
        except UnicodeDecodeError:
            raise JSONRejected("invalid", "not UTF-8") from None
    size = _utf8_size(text, max_bytes)
    if size > max_bytes:
        raise JSONRejected("too large", f"{size} bytes, over {max_bytes}")
    try:
        value = json.loads(text)
    except RecursionError:
        raise JSONRejected("too deep", f"over {max_depth} levels") from None
    except (ValueError, TypeError) as e:
        # ValueError covers JSONDecodeError, bad UTF-8 and int digit limits; never echo the payload.
        raise JSONRejected("invalid", type(e).__name__) from None
    if isinstance(value, (dict, list)) and _opens(text) > max_depth and _depth(text) > max_depth:
        raise JSONRejected("too deep", f"over {max_depth} levels")
    return value


def _utf8_size(text: str, limit: int) -> int:
    if len(text) * 4 <= limit:
        return len(text)  # cannot be over the limit whatever it holds: skip the encoding
    # surrogatepass: a str holding lone surrogates still has a well-defined size for the limit check.
    return len(text.encode("utf-8", "surrogatepass"))


def _opens(text: str) -> int:
    return text.count("[") + text.count("{")


def _depth(text: str) -> int:
    """The deepest nesting of a valid JSON document: strings removed, then the running bracket balance."""
    import numpy as np  # only for documents with many brackets; numpy is loaded by the daemon anyway

    skeleton = _STRING.sub("", text).encode("ascii", "replace")
    codes = np.frombuffer(skeleton, dtype=np.uint8)
    step = np.zeros(codes.shape, dtype=np.int32)
    step[(codes == ord("[")) | (codes == ord("{"))] = 1
    step[(codes == ord("]")) | (codes == ord("}"))] = -1
    return int(np.cumsum(step).max(initial=0))


# --- out --------------------------------------------------------------------------------------------------


def has_lone_surrogate(text: str) -> bool:
    """True when `text` cannot be encoded as UTF-8 (it holds a lone surrogate, as JSON's "\\ud800" makes)."""
    return _SURROGATE.search(text) is not None


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD, so it encodes as UTF-8."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def sanitize(
    value: Any,
    *,
    max_depth: int = OUTPUT_DEPTH,
    budget: int = OUTPUT_BUDGET,
    text: Callable[[str], str] | None = None,
) -> Any:
    """`value` rebuilt from JSON types only, fit for `dumps_line` whatever it held.

    Mappings become dicts with string keys, sequences and sets lists, enums their value; non-finite floats
    become null and integers too long to print a marker; strings lose lone surrogates (and pass through
    `text`, e.g. a secret mask, when given). Nesting below `max_depth` and everything past `budget` characters
    of content are replaced by `TRUNCATED` markers, so the result stays small and the cut stays visible.
    """
    return Sanitizer(budget=budget, text=text).value(value, max_depth)


class Sanitizer:
    """One `sanitize` pass; `cut` tells afterwards whether anything was truncated."""

    __slots__ = ("budget", "cut", "text")

    def __init__(self, *, budget: int = OUTPUT_BUDGET, text: Callable[[str], str] | None = None) -> None:
        self.budget = budget
        self.text = text
        self.cut = False

    def string(self, s: str) -> str:
        s = clean_text(s)
        if self.text is not None:
            s = self.text(s)
        if len(s) + 2 > self.budget:
            s = s[: max(0, self.budget - 2)] + TRUNCATED
            self.cut = True
        self.budget -= len(s) + 2
        return s

    def value(self, v: Any, depth: int) -> Any:
        if v is None or isinstance(v, bool):
            self.budget -= 5
            return v
        if isinstance(v, str):
            return self.string(v)
        if isinstance(v, int):
            self.budget -= 8
            if v.bit_length() <= MAX_INT_BITS:
                return v
            self.cut = True
            return TRUNCATED
        if isinstance(v, float):
            self.budget -= 8
            return v if math.isfinite(v) else None  # strict JSON has no NaN; jq and browsers reject it
        if isinstance(v, enum.Enum):
            return self.value(v.value, depth)
        if isinstance(v, Mapping):
            return self.mapping(v, depth)
        if isinstance(v, (list, tuple, set, frozenset)):
            return self.sequence(v, depth)
        try:
            shown = str(v)
        except Exception:  # a value whose str() fails still gets a line
            shown = f"<{type(v).__name__}>"
        return self.string(shown)

    def too_deep(self) -> str:
        self.cut = True
        return self.string(f"{TRUNCATED} nested too deep")

    def mapping(self, m: Mapping[Any, Any], depth: int) -> Any:
        if depth <= 0:
            return self.too_deep()
        out: dict[str, Any] = {}
        items = list(m.items())
        for i, (k, v) in enumerate(items):
            if self.budget <= 0:
                out[TRUNCATED] = len(items) - i  # how many entries were left out
                self.cut = True
                break
            key = self.string(k if isinstance(k, str) else _plain(k))
            out[key] = self.value(v, depth - 1)
        return out

    def sequence(self, seq: Any, depth: int) -> Any:
        if depth <= 0:
            return self.too_deep()
        items = list(seq)
        out: list[Any] = []
        for i, v in enumerate(items):
            if self.budget <= 0:
                out.append(f"{TRUNCATED} {len(items) - i} more")
                self.cut = True
                break
            out.append(self.value(v, depth - 1))
        return out


def _plain(key: Any) -> str:
    if isinstance(key, enum.Enum):
        key = key.value
    try:
        return str(key)
    except Exception:
        return f"<{type(key).__name__}>"


def dumps_line(obj: Any) -> bytes:
    """One line of strict UTF-8 JSON ending in a newline, for a value `sanitize` returned.

    Never raises: a value that still cannot be encoded (a bug behind sanitize) becomes a marker object.
    """
    try:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as e:
        text = json.dumps({"error": f"unencodable value ({type(e).__name__})"}, separators=(",", ":"))
    return text.translate(_UNSAFE_IN_LINE).encode("utf-8", "replace") + b"\n"
