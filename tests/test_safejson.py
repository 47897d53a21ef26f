"""safejson: bounded parsing of untrusted JSON and output that is always one line of strict UTF-8 JSON."""

from __future__ import annotations

import enum
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceterm import safejson
from voiceterm.safejson import TRUNCATED, JSONRejected


def nested_text(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("as_bytes", [False, True])
def test_depth_limit_is_exact_and_ignores_brackets_in_strings(as_bytes: bool) -> None:
    def load(text: str) -> object:
        return safejson.loads(text.encode() if as_bytes else text, max_bytes=1 << 20, max_depth=64)

    assert load(nested_text(64))
    with pytest.raises(JSONRejected, match="nested too deep") as e:
        load(nested_text(65))
    assert e.value.kind == "too deep"
    assert load('{"a":' * 60 + '"[[[[{{{{\\"[[[[" ' + "}" * 60)  # brackets and escaped quotes in a string
    assert load("[" + "[]," * 5000 + "[]]") == [[] for _ in range(5001)]  # wide, not deep


def test_size_and_syntax() -> None:
    with pytest.raises(JSONRejected, match="too large"):
        safejson.loads('"' + "é" * 600 + '"', max_bytes=1000)  # 600 characters, 1200 bytes
    for bad in ("{", "1" * 5000, b"\xff", "[1,]", ""):
        with pytest.raises(JSONRejected, match="invalid JSON") as e:
            safejson.loads(bad, max_bytes=1 << 20)
        assert e.value.kind == "invalid"
    assert safejson.loads('"\\ud800"', max_bytes=100) == "\ud800"  # parsed; sanitize cleans it on the way out


def test_cost_is_linear_whatever_the_shape() -> None:
    # A megabyte of the worst shapes for a parser: deep, wide, many strings with escapes.
    shapes = [
        "[" * (1 << 20),
        "[" * 500_000 + "]" * 500_000,
        "[" + '"\\"",' * 200_000 + "0]",
        "[" + "[]," * 250_000 + "[]]",
    ]
    for text in shapes:
        started = time.process_time()
        with pytest.raises(JSONRejected) if text.startswith("[[[") else _nothing():
            safejson.loads(text, max_bytes=1 << 21, max_depth=64)
        # A complexity guard, not a speed figure: linear work is a fraction of a second, a quadratic one hours.
        assert time.process_time() - started < 10


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


class Color(enum.Enum):
    RED = "red"


def test_sanitize_makes_anything_valid() -> None:
    deep: object = "leaf"
    for _ in range(100):
        deep = [deep]
    value = {
        "s": "a\ud800b",
        "\udfff": 1,
        3: float("nan"),
        None: float("-inf"),
        "big": 10**5000,
        "ok": 2**64,
        "set": {1},
        "enum": Color.RED,
        "deep": deep,
        "obj": object.__new__(type("Weird", (), {"__str__": lambda self: 1 / 0})),
    }
    out = safejson.sanitize(value)
    line = safejson.dumps_line(out)
    back = json.loads(line.decode("utf-8"))
    assert back["s"] == "a\ufffdb" and back["\ufffd"] == 1 and back["3"] is None and back["None"] is None
    assert back["big"] == TRUNCATED and back["ok"] == 2**64 and back["set"] == [1] and back["enum"] == "red"
    assert back["obj"] == "<Weird>"
    level, depth = back["deep"], 0
    while isinstance(level, list):
        level, depth = level[0], depth + 1
    assert level == f"{TRUNCATED} nested too deep" and depth == safejson.OUTPUT_DEPTH - 1


def test_sanitize_budget_cuts_visibly() -> None:
    sanitizer = safejson.Sanitizer(budget=100)
    out = sanitizer.value({"a": "x" * 500, "b": list(range(1000)), "c": 1}, 32)
    assert sanitizer.cut
    assert out["a"].endswith(TRUNCATED) and len(out["a"]) < 120
    assert out[TRUNCATED] == 2  # "b" and "c" were left out
    small = safejson.Sanitizer(budget=1000)
    assert small.value(["x"] * 10, 32) == ["x"] * 10 and not small.cut


def test_dumps_line_escapes_what_breaks_lines_or_drives_terminals() -> None:
    line = safejson.dumps_line({"t": "a\u2028b\u2029c\x85d\x9b2Je\u202ef\x7f"})
    assert line.count(b"\n") == 1
    for raw in ("\u2028", "\u2029", "\x85", "\x9b", "\u202e", "\x7f"):
        assert raw.encode() not in line
    assert json.loads(line)["t"] == "a\u2028b\u2029c\x85d\x9b2Je\u202ef\x7f"
    assert safejson.dumps_line(float("nan")) == b'{"error":"unencodable value (ValueError)"}\n'


@given(
    st.recursive(
        st.one_of(
            st.none(),
            st.booleans(),
            st.floats(),
            st.integers(),
            st.text(st.characters(codec=None, categories=None)),
        ),
        lambda c: st.one_of(st.lists(c), st.dictionaries(st.text(), c)),
        max_leaves=20,
    )
)
def test_any_value_becomes_one_strict_line(value: object) -> None:
    line = safejson.dumps_line(safejson.sanitize(value))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    json.loads(line.decode("utf-8"), parse_constant=lambda name: pytest.fail(name))
