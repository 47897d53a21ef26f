"""`voiceterm meter`'s line: the raw level bar, what the front-end hands to the bot, and the running daemon's
echo canceller figures."""

from __future__ import annotations

from voiceterm.core.metrics import render_prometheus
from voiceterm.meter import daemon_text, frontend_text, render_bar


def test_the_front_end_part_shows_the_level_to_the_bot_and_the_gain() -> None:
    assert (
        frontend_text(-31.26, {"auto_gain": True, "gain_db": 4.0}) == "  | to bot  -31.3 dBFS gain  +4.0 dB"
    )
    assert frontend_text(-31.26, {"auto_gain": False}) == "  | to bot  -31.3 dBFS"


def test_the_daemon_part_shows_the_cancellers_figures_or_why_there_are_none() -> None:
    running = {
        "frontend": {
            "state": "running",
            "erle_db": 46.2,
            "echo_delay_ms": 90.0,
            "diverged_total": 0,
            "resets_total": 1,
        }
    }
    assert daemon_text(running) == "  | daemon: ERLE 46 dB, echo delay 90 ms, diverged 0, resets 1"
    fresh = {"frontend": {"state": "running", "erle_db": None, "echo_delay_ms": None}}
    assert daemon_text(fresh) == "  | daemon: ERLE -, echo delay -, diverged 0, resets 0"
    assert daemon_text({"frontend": {"state": "unavailable"}}) == "  | daemon front-end unavailable"
    assert daemon_text(None) == ""  # no daemon answering


def test_the_bar_is_the_raw_level() -> None:
    line = render_bar(-20.0, -6.0)
    assert "rms  -20.0 dBFS  peak   -6.0 dBFS" in line


def test_the_front_end_figures_reach_the_metrics_file() -> None:
    text = render_prometheus(
        {"frontend": {"state": "running", "erle_db": 46.2, "diverged_total": 0, "error": None}}
    )
    assert 'voiceterm_frontend_state{state="running"} 1' in text
    assert 'voiceterm_frontend_state{state="unavailable"} 0' in text
    assert "# TYPE voiceterm_frontend_diverged_total counter" in text
    assert "voiceterm_frontend_erle_db 46.2" in text
    assert "# HELP voiceterm_frontend_erle_db echo return loss enhancement" in text
