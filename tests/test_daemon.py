"""The daemon whole: the real `voiceterm run` process against the real Pipecat bot.

File-backed ALSA devices, gpiozero's mock pin factory for the LED and button, the terminal keyboard (a pipe
on stdin) for the scripted push-to-talk, a fake NOTIFY_SOCKET collecting what systemd would receive, and the
status socket. One full turn: the bot hears the audio and the echoed reply is played; then SIGTERM ends the
daemon cleanly, saying goodbye to the bot.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voiceterm_devkit.alsa_files import AlsaFileConfig, noise, read_raw, write_raw
from voiceterm_devkit.bot import BotProcess
from voiceterm_devkit.daemonproc import DaemonProcess

MIC_RATE = 16000
SPK_RATE = 24000


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def daemon_env(tmp_path: Path, shared_bot: BotProcess) -> Iterator[DaemonProcess]:
    alsa = AlsaFileConfig(tmp_path / "alsa")
    # 30 s of input: longer than the test can run, since reads past the end of a file PCM repeat stale data.
    write_raw(tmp_path / "mic.raw", noise(MIC_RATE * 30, seed=7, amplitude=6000))
    alsa.add_capture("mic", tmp_path / "mic.raw").add_playback("spk", tmp_path / "spk.raw")
    config = {
        "bot": {"ready_timeout": 2.0},
        "push_to_talk": {"tail_ms": 200},
        "reconnect": {"initial_delay": 0.2, "max_delay": 1.0},
        "heartbeat": {"interval": 2.0, "timeout": 2.0},
    }
    daemon = DaemonProcess(
        tmp_path, bot_url=shared_bot.url, alsa=alsa, config=config, env={"WATCHDOG_USEC": "400000"}
    )
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def test_full_turn_then_clean_sigterm(daemon_env: DaemonProcess, shared_bot: BotProcess) -> None:
    daemon, bot = daemon_env, shared_bot
    sink = daemon.sink
    assert sink is not None
    mark = bot.mark()

    # READY=1 as soon as config, audio and GPIO are up; then the link becomes ready.
    print(f"READY=1 after {daemon.wait_ready():.3f} s (process start incl. imports)")
    daemon.wait_status(lambda s: s["link"]["state"] == "ready", 15, "link ready")
    snap = daemon.status()
    assert snap is not None and snap["status"] == "ready"

    # One push-to-talk turn from the keyboard: space starts, space ends.
    daemon.key(" ")
    daemon.wait_status(lambda s: s["status"] == "listening", 5, "listening")
    start = bot.wait_for(
        lambda e: e["event"] == "message" and (e.get("data") or {}).get("t") == "push_to_talk", 5, since=mark
    )
    assert start["data"]["d"] == {"state": "start"}
    heard_before = bot.audio_in_total()
    wait_until(
        lambda: bot.audio_in_total() - heard_before >= MIC_RATE * 2 // 2, 10, "0.5 s of mic audio at the bot"
    )
    daemon.key(" ")
    bot.wait_for(
        lambda e: e["event"] == "message" and (e.get("data") or {}).get("d") == {"state": "stop"},
        5,
        since=mark,
    )

    # The echoed reply was played: the speaker wrote bot audio (not only idle silence) to the file.
    daemon.wait_status(
        lambda s: s["audio"]["playback"].get("frames_played_total", 0) >= SPK_RATE // 4, 10, "the echo played"
    )
    out = read_raw(daemon.workdir / "spk.raw")
    assert np.abs(out.astype(np.int32)).max() > 1000, "only silence reached the speaker"

    # After the tail, no more mic audio goes to the bot.
    daemon.wait_status(lambda s: s["status"] in ("ready", "speaking", "thinking"), 5, "turn end")

    def quiet_total() -> int | None:
        n = bot.audio_in_total()
        return n if _stable(bot, n) else None

    settled = wait_until(quiet_total, 5, "mic audio to stop flowing")
    assert settled > heard_before

    lines = sink.lines()
    assert any(line.startswith("STATUS=") for line in lines)
    assert "WATCHDOG=1" in lines

    # SIGTERM: a clean exit, disconnect-bot sent, STOPPING=1 told. (That the goodbye is bounded by
    # SHUTDOWN_GRACE_S is tested in virtual time: tests/test_app_virtual_time.py.)
    t0 = time.monotonic()
    daemon.signal(signal.SIGTERM)
    code = daemon.wait(10)
    elapsed = time.monotonic() - t0
    assert code == 0, daemon.log_tail()
    assert "STOPPING=1" in sink.lines()
    bot.wait_for(lambda e: e["event"] == "disconnect_bot", 5, since=mark)
    assert not daemon.escaped_exceptions() and "Traceback" not in daemon.log_tail(1000)
    print(f"SIGTERM to exit: {elapsed * 1000:.0f} ms")


def _stable(bot: BotProcess, n: int) -> bool:
    """True when the bot's received-audio total stays at n over the next 0.4 s of its reports."""
    deadline = time.monotonic() + 0.4
    while time.monotonic() < deadline:
        if bot.audio_in_total() != n:
            return False
        time.sleep(0.05)
    return True


def test_config_error_exits_78_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[audio]\nperiod_ms = "twenty"\n')
    exe = Path(sys.executable).parent / "voiceterm"
    proc = subprocess.run(
        [str(exe), "run", "-c", str(bad)], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 78
    assert proc.stderr.strip().count("\n") == 0
    assert "audio.period_ms" in proc.stderr


def test_missing_gpio_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "v.toml"
    cfg.write_text('[gpio]\npin_factory = "lgpio"\n')
    exe = Path(sys.executable).parent / "voiceterm"
    env = {k: v for k, v in os.environ.items() if k != "GPIOZERO_PIN_FACTORY"}
    proc = subprocess.run(
        [str(exe), "run", "-c", str(cfg)], capture_output=True, text=True, timeout=30, env=env, check=False
    )
    assert proc.returncode == 78, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "gpio" in proc.stderr.lower()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def offline_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    """The daemon with no bot listening: it must still start, report READY and tell the truth."""
    alsa = AlsaFileConfig(tmp_path / "alsa")
    write_raw(tmp_path / "mic.raw", noise(MIC_RATE * 30, seed=3))
    alsa.add_capture("mic", tmp_path / "mic.raw").add_playback("spk", tmp_path / "spk.raw")
    config = {
        "earcons": {"enabled": True},
        "gpio": {"enabled": False},
        "reconnect": {"initial_delay": 0.2, "max_delay": 0.5},
        "status": {"metrics_file": str(tmp_path / "metrics.prom"), "metrics_interval": 1.0},
    }
    daemon = DaemonProcess(tmp_path, bot_url=f"ws://127.0.0.1:{_free_port()}/ws", alsa=alsa, config=config)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def test_offline_status_cli_metrics_and_sighup(offline_daemon: DaemonProcess) -> None:
    daemon = offline_daemon
    sink = daemon.sink
    assert sink is not None
    daemon.wait_ready()  # READY=1 with the bot down

    # The LED and STATUS never claim ready while the bot is unreachable.
    snap = wait_until(daemon.status, 10, "status socket")
    assert snap["status"] == "offline"
    assert snap["link"]["state"] in ("connecting", "backing-off")
    wait_until(
        lambda: any(line.startswith("STATUS=offline") for line in sink.lines()), 5, "STATUS=offline line"
    )

    # `voiceterm status` reads the same document.
    out = subprocess.run(
        [str(Path(sys.executable).parent / "voiceterm"), "status", "--socket", daemon.status_path],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "status: offline" in out.stdout
    assert "link.state:" in out.stdout

    # The Prometheus textfile is written for node_exporter.
    metrics = daemon.workdir / "metrics.prom"
    text = wait_until(lambda: metrics.exists() and metrics.read_text(), 10, "metrics")
    assert 'voiceterm_link_state{state="ready"} 0' in text

    # SIGHUP: a live key (logging.level) applies; a key that needs a restart is named.
    daemon.write_config(
        {"audio": {"capture_device": "spk"}, "reconnect": {"max_delay": 0.8}, "logging": {"level": "debug"}}
    )
    n_ready = sum(1 for line in sink.lines() if line == "READY=1")
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "RELOADING=1" in sink.lines(), 5, "RELOADING=1")
    wait_until(
        lambda: sum(1 for line in sink.lines() if line == "READY=1") > n_ready, 5, "READY=1 after reload"
    )

    # A broken file on SIGHUP keeps the running configuration.
    daemon.write_config({"audio": {"period_ms": 0}})
    daemon.signal(signal.SIGHUP)
    wait_until(
        lambda: sum(1 for line in sink.lines() if line == "READY=1") > n_ready + 1, 5, "READY after refusal"
    )
    assert daemon.alive(), "a bad file on SIGHUP must not stop the daemon"

    daemon.signal(signal.SIGINT)
    assert daemon.wait(10) == 0
    daemon.stop()  # the log reader has read every line
    stderr = "\n".join(line for _, line in daemon.log_lines)
    assert "audio.capture_device" in stderr and "need a restart" in stderr
    applied = next(line for line in stderr.splitlines() if "reloaded" in line)
    assert "reconnect.max_delay" in applied and "logging.level" in applied
    assert "reload refused" in stderr and "audio.period_ms" in stderr
    assert "Traceback" not in stderr
    # One line per state change, not one per attempt: a few lines for many reconnect attempts.
    attempts = snap["link"].get("attempts", 0)
    link_lines = [line for line in stderr.splitlines() if "voiceterm.link" in line]
    assert len(link_lines) <= 6, "\n".join(link_lines)
    print(f"link log lines: {len(link_lines)} for >= {attempts} failed attempts")


def test_devices_lists_file_pcms(tmp_path: Path) -> None:
    alsa = AlsaFileConfig(tmp_path / "alsa")
    write_raw(tmp_path / "mic.raw", noise(1600))
    alsa.add_capture("mic", tmp_path / "mic.raw").add_playback("spk", tmp_path / "spk.raw").write()
    cfg = tmp_path / "v.toml"
    cfg.write_text('[audio]\ncapture_device = "mic"\nplayback_device = "spk"\n')
    exe = Path(sys.executable).parent / "voiceterm"
    out = subprocess.run(
        [str(exe), "devices", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **alsa.env},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "mic  <- configured" in out.stdout
    assert "spk  <- configured" in out.stdout


def test_meter_prints_levels(tmp_path: Path) -> None:
    alsa = AlsaFileConfig(tmp_path / "alsa")
    t = np.arange(MIC_RATE * 5) / MIC_RATE
    tone = (np.sin(2 * np.pi * 440 * t) * 0.5 * 32767).astype(np.int16)  # -6 dBFS peak, -9 dBFS rms
    write_raw(tmp_path / "mic.raw", tone)
    alsa.add_capture("mic", tmp_path / "mic.raw").add_playback("spk", tmp_path / "spk.raw").write()
    cfg = tmp_path / "v.toml"
    cfg.write_text('[audio]\ncapture_device = "mic"\npacing = "wall-clock"\n')
    exe = Path(sys.executable).parent / "voiceterm"
    out = subprocess.run(
        [str(exe), "meter", "-c", str(cfg), "--seconds", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **alsa.env},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if "rms" in line]
    assert lines, out.stdout
    m = re.search(r"rms\s+(-?[\d.]+) dBFS\s+peak\s+(-?[\d.]+) dBFS", lines[-1])
    assert m, lines[-1]
    assert float(m.group(1)) == pytest.approx(-9.03, abs=0.15)
    assert float(m.group(2)) == pytest.approx(-6.02, abs=0.1)
