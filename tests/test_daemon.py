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

from voiceterm.io.control import read_status
from voiceterm_devkit.alsa_files import AlsaFileConfig, noise, read_raw, write_raw
from voiceterm_devkit.bot import BotProcess
from voiceterm_devkit.daemonproc import NotifySink

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
def daemon_env(tmp_path: Path, shared_bot: BotProcess) -> Iterator[dict[str, Any]]:
    alsa = AlsaFileConfig(tmp_path / "alsa")
    mic_file = tmp_path / "mic.raw"
    spk_file = tmp_path / "spk.raw"
    # 30 s of input: longer than the test can run, since reads past the end of a file PCM repeat stale data.
    write_raw(mic_file, noise(MIC_RATE * 30, seed=7, amplitude=6000))
    alsa.add_capture("mic", mic_file).add_playback("spk", spk_file).write()
    status_sock = tmp_path / "status.sock"
    config = tmp_path / "voiceterm.toml"
    config.write_text(
        f"""
[bot]
url = "{shared_bot.url}"
ready_timeout = 2.0
[audio]
capture_device = "mic"
playback_device = "spk"
pacing = "wall-clock"
[earcons]
enabled = false
[push_to_talk]
tail_ms = 200
[gpio]
pin_factory = "mock"
[reconnect]
initial_delay = 0.2
max_delay = 1.0
[heartbeat]
interval = 2.0
timeout = 2.0
[status]
socket = "{status_sock}"
[events]
socket = "{tmp_path / "events.sock"}"
"""
    )
    sink = NotifySink(tmp_path / "notify.sock")
    env = {
        **os.environ,
        **alsa.env,
        "NOTIFY_SOCKET": str(sink.path),
        "WATCHDOG_USEC": "400000",
        "VOICETERM_CONFIG": str(config),
    }
    env.pop("WATCHDOG_PID", None)
    exe = Path(sys.executable).parent / "voiceterm"
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(exe), "run", "--keyboard"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        yield {
            "proc": proc,
            "sink": sink,
            "status": str(status_sock),
            "bot": shared_bot,
            "spk": spk_file,
            "started": started,
        }
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        sink.close()


def _status(path: str) -> dict[str, Any] | None:
    try:
        return read_status(path, timeout=1.0)
    except (OSError, ValueError):
        return None


def test_full_turn_then_clean_sigterm(daemon_env: dict[str, Any]) -> None:
    proc: subprocess.Popen[bytes] = daemon_env["proc"]
    sink: NotifySink = daemon_env["sink"]
    bot: BotProcess = daemon_env["bot"]
    mark = bot.mark()

    # READY=1 as soon as config, audio and GPIO are up; then the link becomes ready.
    ready_at = wait_until(lambda: sink.first("READY=1"), 20, "READY=1")
    print(f"READY=1 after {ready_at - daemon_env['started']:.3f} s (process start incl. imports)")
    wait_until(
        lambda: (s := _status(daemon_env["status"])) and s["link"]["state"] == "ready", 15, "link ready"
    )
    snap = _status(daemon_env["status"])
    assert snap is not None and snap["status"] == "ready"

    # One push-to-talk turn from the keyboard: space starts, space ends.
    assert proc.stdin is not None
    proc.stdin.write(b" ")
    proc.stdin.flush()
    wait_until(lambda: _status(daemon_env["status"])["status"] == "listening", 5, "listening")
    start = bot.wait_for(
        lambda e: e["event"] == "message" and (e.get("data") or {}).get("t") == "push_to_talk", 5, since=mark
    )
    assert start["data"]["d"] == {"state": "start"}
    heard_before = bot.audio_in_total()
    wait_until(
        lambda: bot.audio_in_total() - heard_before >= MIC_RATE * 2 // 2, 10, "0.5 s of mic audio at the bot"
    )
    proc.stdin.write(b" ")
    proc.stdin.flush()
    bot.wait_for(
        lambda e: e["event"] == "message" and (e.get("data") or {}).get("d") == {"state": "stop"},
        5,
        since=mark,
    )

    # The echoed reply was played: the speaker wrote bot audio (not only idle silence) to the file.
    def played() -> bool:
        s = _status(daemon_env["status"])
        return bool(s) and s["audio"]["playback"].get("frames_played_total", 0) >= SPK_RATE // 4

    wait_until(played, 10, "the echo to be played")
    out = read_raw(daemon_env["spk"])
    assert np.abs(out.astype(np.int32)).max() > 1000, "only silence reached the speaker"

    # After the tail, no more mic audio goes to the bot.
    wait_until(
        lambda: _status(daemon_env["status"])["status"] in ("ready", "speaking", "thinking"), 5, "turn end"
    )

    def quiet_total() -> int | None:
        n = bot.audio_in_total()
        return n if _stable(bot, n) else None

    settled = wait_until(quiet_total, 5, "mic audio to stop flowing")
    assert settled > heard_before

    lines = sink.lines()
    assert any(line.startswith("STATUS=") for line in lines)
    assert "WATCHDOG=1" in lines

    # SIGTERM: a clean exit within a second, disconnect-bot sent, STOPPING=1 told.
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(5)
    elapsed = time.monotonic() - t0
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert code == 0, stderr
    assert elapsed < 1.5, f"SIGTERM took {elapsed:.2f} s"
    assert "STOPPING=1" in sink.lines()
    bot.wait_for(lambda e: e["event"] == "disconnect_bot", 5, since=mark)
    assert "Traceback" not in stderr
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
def offline_daemon(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The daemon with no bot listening: it must still start, report READY and tell the truth."""
    alsa = AlsaFileConfig(tmp_path / "alsa")
    write_raw(tmp_path / "mic.raw", noise(MIC_RATE * 30, seed=3))
    alsa.add_capture("mic", tmp_path / "mic.raw").add_playback("spk", tmp_path / "spk.raw").write()
    status_sock = tmp_path / "status.sock"
    metrics = tmp_path / "metrics.prom"
    config = tmp_path / "voiceterm.toml"
    body = f"""
[bot]
url = "ws://127.0.0.1:{_free_port()}/ws"
[audio]
capture_device = "mic"
playback_device = "spk"
pacing = "wall-clock"
[gpio]
enabled = false
[reconnect]
initial_delay = 0.2
max_delay = 0.5
[status]
socket = "{status_sock}"
metrics_file = "{metrics}"
metrics_interval = 1.0
"""
    config.write_text(body)
    sink = NotifySink(tmp_path / "notify.sock")
    env = {**os.environ, **alsa.env, "NOTIFY_SOCKET": str(sink.path)}
    exe = Path(sys.executable).parent / "voiceterm"
    proc = subprocess.Popen(
        [str(exe), "run", "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        yield {
            "proc": proc,
            "sink": sink,
            "status": str(status_sock),
            "config": config,
            "body": body,
            "metrics": metrics,
            "exe": exe,
        }
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        sink.close()


def test_offline_status_cli_metrics_and_sighup(offline_daemon: dict[str, Any]) -> None:
    proc: subprocess.Popen[bytes] = offline_daemon["proc"]
    sink: NotifySink = offline_daemon["sink"]
    wait_until(lambda: sink.first("READY=1"), 20, "READY=1 with the bot down")

    # The LED and STATUS never claim ready while the bot is unreachable.
    snap = wait_until(lambda: _status(offline_daemon["status"]), 10, "status socket")
    assert snap["status"] == "offline"
    assert snap["link"]["state"] in ("connecting", "backing-off")
    wait_until(
        lambda: any(line.startswith("STATUS=offline") for line in sink.lines()), 5, "STATUS=offline line"
    )

    # `voiceterm status` reads the same document.
    out = subprocess.run(
        [str(offline_daemon["exe"]), "status", "--socket", offline_daemon["status"]],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "status: offline" in out.stdout
    assert "link.state:" in out.stdout

    # The Prometheus textfile is written for node_exporter.
    text = wait_until(
        lambda: offline_daemon["metrics"].exists() and offline_daemon["metrics"].read_text(), 10, "metrics"
    )
    assert 'voiceterm_link_state{state="ready"} 0' in text

    # SIGHUP: a live key (logging.level) applies; a key that needs a restart is named.
    offline_daemon["config"].write_text(
        offline_daemon["body"]
        .replace('capture_device = "mic"', 'capture_device = "spk"')
        .replace("max_delay = 0.5", "max_delay = 0.8")
        + '[logging]\nlevel = "debug"\n'
    )
    n_ready = sum(1 for line in sink.lines() if line == "READY=1")
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "RELOADING=1" in sink.lines(), 5, "RELOADING=1")
    wait_until(
        lambda: sum(1 for line in sink.lines() if line == "READY=1") > n_ready, 5, "READY=1 after reload"
    )

    # A broken file on SIGHUP keeps the running configuration.
    offline_daemon["config"].write_text("[audio]\nperiod_ms = 0\n")
    proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: sum(1 for line in sink.lines() if line == "READY=1") > n_ready + 1, 5, "READY after refusal"
    )
    assert proc.poll() is None, "a bad file on SIGHUP must not stop the daemon"

    proc.send_signal(signal.SIGINT)
    assert proc.wait(5) == 0
    stderr = proc.stderr.read().decode() if proc.stderr else ""
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
