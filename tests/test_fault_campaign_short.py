"""The fault campaign, CI size: the real daemon and the real Pipecat bot through the chaos proxy, with 3 bot
kill -9/restarts, a black hole, a garbage burst, an oversized frame, a 10x audio flood, a device removal
and a SIGHUP at random moments. Nothing may escape, every fault must be recovered from, and the books must
balance: every frame of bot audio and every mic chunk that entered the daemon is delivered or counted.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from voiceterm_devkit.campaign import KINDS, run_campaign, short_plan

pytestmark = [pytest.mark.bot, pytest.mark.alsa, pytest.mark.timeout(150)]


def test_short_fault_campaign(tmp_path: Path) -> None:
    if importlib.util.find_spec("pipecat") is None:
        pytest.skip("pipecat-ai is not installed (install the 'bot' extra)")
    lines: list[str] = []
    report = run_campaign(short_plan(seed=7), tmp_path, say=lines.append)
    story = "\n".join(lines) + f"\n{report['outcomes']}"

    assert report["exceptions_escaped"] == 0, report["escaped_lines"]
    assert report["exit_code"] == 0
    assert report["attempts"] == 9, story
    assert set(report["by_kind"]) == set(KINDS)
    assert report["recoveries"] == report["attempts"], story

    books = report["books"]
    down, up, garbage = books["bot_audio"], books["mic_audio"], books["garbage_frames"]
    assert down["unaccounted"] == 0, down
    assert down["unaccounted_link_to_speaker"] == 0, down
    assert down["received_by_daemon"] > 0 and down["played"] > 0
    # The flood outran the playout cap: those frames were dropped, and counted.
    assert down["dropped_counted"]["playout_cap_or_device_gone"] > 0
    assert up["unaccounted"] == 0, up
    assert 0 <= up["in_flight_to_the_pump"] <= 8
    assert up["sent"] > 0
    assert garbage["injected"] == 6 and garbage["counted"] == 6
    assert books["balanced"]

    by_kind = {o["kind"]: o for o in report["outcomes"]}
    assert by_kind["garbage"]["detail"]["session_kept"]
    assert by_kind["sighup"]["detail"]["applied"]
    assert "1009" in (by_kind["oversized"]["detail"]["reason"] or "")
    assert by_kind["device"]["detail"]["fault_seen"]
    # The always-on latency recorders kept counting through the faults.
    latency = report["latency"]
    assert latency["capture_to_send"]["samples_total"] >= up["sent"] - 8
    assert latency["receive_to_playout"]["samples_total"] > 0
    assert latency["receive_to_write"]["samples_total"] > 0
    # Months of this must not grow memory: a short run may settle a little, never by much.
    assert report["rss_mib"]["growth"] < 8.0, report["rss_mib"]
