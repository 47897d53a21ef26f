"""Prometheus text rendering of the status snapshot: the naming rule, one-hot enums, and valid exposition text."""

from __future__ import annotations

import math
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from voiceterm.core.linkstate import LinkState
from voiceterm.core.metrics import render_prometheus

SNAPSHOT: dict[str, Any] = {
    "version": "0.1.0",
    "uptime_s": 61.5,
    "status": "listening",
    "link": {
        "state": "ready",
        "attempts": 0,
        "last_error": None,
        "connects_total": 3,
        "uptime_s": 12.5,
    },
    "audio": {
        "capture_fault": None,
        "playback_fault": "device unplugged",
        "overruns_total": 2,
        "underruns_total": 0,
        "playout_dropped_frames_total": 7,
        "mic_level_dbfs": -42.5,
    },
    "link_io": {
        "sent_audio_total": 1500,
        "dropped_outgoing_total": 0,
        "received_audio_total": 900,
        "dropped_incoming_total": 1,
    },
    "panel": {"muted": True, "status": "muted"},
    "pins": [17, 27],
}

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(
    rf'^({_NAME})(\{{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"\}})? '
    r"(NaN|[+-]Inf|-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)$"
)


def parse(text: str) -> dict[str, dict[str, Any]]:
    """A strict reader of the text format: every sample follows its family's HELP and TYPE lines."""
    families: dict[str, dict[str, Any]] = {}
    current: str | None = None
    assert text == "" or text.endswith("\n")
    # The format splits on "\n" only; any other line break inside a line is a bug the parser must see.
    for line in text.split("\n")[:-1] if text else []:
        assert line.isprintable(), repr(line)
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert re.fullmatch(_NAME, name), line
            assert name not in families, f"family {name} twice"
            families[name] = {"help": line.split(" ", 3)[3], "samples": {}}
            current = name
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name == current, line
            assert kind in ("counter", "gauge"), line
            if kind == "counter":
                assert name.endswith("_total"), line
            families[name]["type"] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.groups()
            assert name == current and "type" in families[name], line
            families[name]["samples"][labels or ""] = float(value)
    return families


def test_the_naming_rule() -> None:
    fam = parse(render_prometheus(SNAPSHOT))
    assert fam["voiceterm_link_connects_total"]["type"] == "counter"
    assert fam["voiceterm_link_connects_total"]["samples"] == {"": 3}
    assert fam["voiceterm_audio_overruns_total"]["type"] == "counter"
    assert fam["voiceterm_link_io_dropped_incoming_total"]["samples"] == {"": 1}
    assert fam["voiceterm_link_attempts"]["type"] == "gauge"
    assert fam["voiceterm_link_uptime_s"]["samples"] == {"": 12.5}
    assert fam["voiceterm_uptime_s"]["samples"] == {"": 61.5}
    assert fam["voiceterm_audio_mic_level_dbfs"]["samples"] == {"": -42.5}
    assert fam["voiceterm_panel_muted"] == {
        "help": "voiceterm status field panel.muted",
        "type": "gauge",
        "samples": {"": 1},
    }


def test_the_link_state_is_one_hot_over_every_known_state() -> None:
    fam = parse(render_prometheus(SNAPSHOT))
    samples = fam["voiceterm_link_state"]["samples"]
    assert samples == {f'{{state="{s.value}"}}': (1 if s is LinkState.READY else 0) for s in LinkState}


def test_open_enums_and_the_version() -> None:
    fam = parse(render_prometheus(SNAPSHOT))
    assert fam["voiceterm_status"]["samples"] == {'{status="listening"}': 1}
    assert fam["voiceterm_panel_status"]["samples"] == {'{status="muted"}': 1}
    assert fam["voiceterm_info"]["samples"] == {'{version="0.1.0"}': 1}


def test_an_unknown_state_is_shown_not_hidden() -> None:
    fam = parse(render_prometheus({"link": {"state": "teleporting"}}))
    samples = fam["voiceterm_link_state"]["samples"]
    assert samples['{state="teleporting"}'] == 1
    assert sum(samples.values()) == 1
    assert len(samples) == len(LinkState) + 1


def test_free_text_none_and_lists_are_skipped() -> None:
    text = render_prometheus(SNAPSHOT)
    assert "device unplugged" not in text
    assert "last_error" not in text
    assert "capture_fault" not in text
    assert "pins" not in text


def test_special_floats_and_escaping() -> None:
    snap = {"a": math.nan, "b": math.inf, "c": -math.inf, "d": 1e-7, "version": 'x"y\\z\nw'}
    fam = parse(render_prometheus(snap))
    assert math.isnan(fam["voiceterm_a"]["samples"][""])
    assert fam["voiceterm_b"]["samples"][""] == math.inf
    assert fam["voiceterm_c"]["samples"][""] == -math.inf
    assert fam["voiceterm_d"]["samples"][""] == 1e-7
    assert list(fam["voiceterm_info"]["samples"]) == ['{version="x\\"y\\\\z\\nw"}']


def test_names_are_sanitised_and_collisions_keep_the_output_valid() -> None:
    snap = {"mic-level.db": 1.0, "mic_level_db": 2.0, "3d": {"x": 1}}
    text = render_prometheus(snap, prefix="")
    fam = parse(text)
    assert fam["mic_level_db"]["samples"] == {"": 1.0}  # the first key wins
    assert fam["_3d_x"]["samples"] == {"": 1}


def test_prefix_help_texts_and_empty_snapshot() -> None:
    fam = parse(
        render_prometheus(
            {"link": {"connects_total": 1}},
            prefix="vt_",
            help_texts={"link.connects_total": "sessions opened"},
        )
    )
    assert fam == {
        "vt_link_connects_total": {"help": "sessions opened", "type": "counter", "samples": {"": 1}}
    }
    assert render_prometheus({}) == ""
    assert render_prometheus({"only": "text"}) == ""


_keys = st.text(min_size=1, max_size=12)
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
)
_snapshots = st.recursive(
    st.dictionaries(_keys, _leaves, max_size=6),
    lambda children: st.dictionaries(_keys, st.one_of(_leaves, children), max_size=6),
    max_leaves=30,
)


@given(_snapshots)
def test_any_snapshot_renders_valid_exposition_text(snap: dict[str, Any]) -> None:
    parse(render_prometheus(snap))
