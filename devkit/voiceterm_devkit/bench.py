"""The daemon in numbers (`scripts/bench`): the real `voiceterm run` against a local Pipecat echo bot, then the
baseline a Python user would otherwise pick (pipecat's `WebsocketClientTransport` in a pipecat pipeline,
`voiceterm_devkit.baseline_client`) doing the same job against the same bot, in the same invocation.

Both stream a 16 kHz mic file up at real time and take the bot's 24 kHz echo down; CPU time and memory come
from /proc for each process over the same steady window. Latency inside the daemon comes from its own
always-on recorders (status socket, "latency"). Every target of the issue is checked and a missed one is
printed with its gap. Results: a table on stdout, out/bench/results.json and out/bench/latency.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voiceterm import __version__
from voiceterm.core.latency import bucket_difference, summarize_buckets
from voiceterm.core.reconnect import DEFAULT_STABLE_AFTER
from voiceterm_devkit.alsa_files import AlsaFileConfig, speech_like, write_raw
from voiceterm_devkit.bot import BotProcess
from voiceterm_devkit.daemonproc import (
    DaemonProcess,
    RssSampler,
    cpu_seconds,
    memory_kib,
    thread_cpu_seconds,
)
from voiceterm_devkit.echo_bot import BENCH_INTERRUPT_AFTER_S

MIC_RATE = 16000
BOT_RATE = 24000
PERIOD_MS = 20  # the daemon's default audio.period_ms
BUFFER_PERIODS = 4  # ... and audio.buffer_periods
PREROLL_MS = 60  # ... and audio.preroll_ms
MIB = 1024.0

# The targets.
TARGET_CPU_RATIO = 1 / 5  # of the baseline's CPU
TARGET_CPU_CORE = 0.01  # of one core
TARGET_RSS_MIB = 35.0
TARGET_RSS_RATIO = 1 / 2
TARGET_READY_S = 0.300
TARGET_P99_MS = 2.0
TARGET_INTERRUPT_MS = PERIOD_MS * (1 + BUFFER_PERIODS)  # one period + the ALSA buffer

LATENCY_LABELS = {
    "capture_to_send": "capture returned -> WebSocket send returned",
    "receive_to_playout": "WebSocket receive -> in the playout buffer (processing)",
    "receive_to_write": "WebSocket receive -> first frame written to ALSA (total, jitter buffer included)",
    "receive_to_audible": "WebSocket receive -> first frame leaves the device (total, device clock)",
    "interruption": "interruption frame received -> no old bot audio left in the device",
}


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        fields = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
        # x86 says "model name"; a Raspberry Pi says "Model" (the board) and "Hardware".
        model = fields.get("model name") or fields.get("model", "") or fields.get("hardware", "")
    pipecat_version = ""
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        pipecat_version = version("pipecat-ai")
    return {
        "cores": os.cpu_count(),
        "cpu_model": model or platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "voiceterm": __version__,
        "pipecat_ai": pipecat_version,
        "loadavg_at_start": os.getloadavg(),
    }


# --- one measured window of a process ----------------------------------------------------------------


@dataclass
class Window:
    """CPU and memory of one process over a steady window, and how much audio went each way."""

    cpu_s: float
    wall_s: float
    rss_steady_kib: float
    rss_peak_kib: int
    up_realtime: float  # mic audio the bot received in the window / the window's length
    down_realtime: float  # bot audio the client took in / the window's length
    main_thread_cpu_s: float  # the event loop's thread (trio or asyncio); the rest is other threads

    @property
    def cpu_per_min(self) -> float:
        return self.cpu_s / self.wall_s * 60.0

    @property
    def core_fraction(self) -> float:
        return self.cpu_s / self.wall_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "cpu_s": round(self.cpu_s, 3),
            "wall_s": round(self.wall_s, 3),
            "cpu_s_per_min": round(self.cpu_per_min, 4),
            "core_percent": round(self.core_fraction * 100, 3),
            "rss_steady_mib": round(self.rss_steady_kib / MIB, 2),
            "rss_peak_mib": round(self.rss_peak_kib / MIB, 2),
            "up_realtime": round(self.up_realtime, 3),
            "down_realtime": round(self.down_realtime, 3),
            "main_thread_core_percent": round(self.main_thread_cpu_s / self.wall_s * 100, 3),
            # Two /proc reads a tick apart can differ by a tick: never below zero.
            "other_threads_core_percent": round(
                max(0.0, self.cpu_s - self.main_thread_cpu_s) / self.wall_s * 100, 3
            ),
        }


def bot_audio_in_between(bot: BotProcess, t0: float, t1: float) -> int:
    """Mic bytes the bot reported receiving with report times in [t0, t1)."""
    return sum(e.get("bytes", 0) for e in bot.events("audio_in") if t0 <= e["t"] < t1)


def measure_window(pid: int, seconds: float, bot: BotProcess, down_bytes: Any) -> tuple[Window, float, float]:
    """Measure `pid` for `seconds`; `down_bytes()` reads the client's received-bot-audio byte count."""
    sampler = RssSampler(pid).start()
    down0 = down_bytes()
    main0 = thread_cpu_seconds(pid).get(pid, 0.0)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    main1 = thread_cpu_seconds(pid).get(pid, 0.0)
    down1 = down_bytes()
    samples = [kib for _, kib in sampler.stop()]
    # The kernel updates VmHWM lazily: a sample may be above it.
    peak = max(memory_kib(pid)["VmHWM"], *samples)
    wall = t1 - t0
    # The bot reports mic audio every 200 ms: read its reports for the window once they are in.
    time.sleep(0.3)
    up = bot_audio_in_between(bot, t0 + 0.2, t1 + 0.2)
    window = Window(
        cpu_s=cpu1 - cpu0,
        wall_s=wall,
        rss_steady_kib=statistics.median(samples) if samples else float("nan"),
        rss_peak_kib=peak,
        up_realtime=up / (2 * MIC_RATE) / wall,
        down_realtime=(down1 - down0) / (2 * BOT_RATE) / wall,
        main_thread_cpu_s=main1 - main0,
    )
    return window, t0, t1


# --- the daemon ---------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, out_dir: Path) -> None:
        self.args = args
        self.out_dir = out_dir
        self.work = out_dir / "work"
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.mic_file = self.work / "mic.raw"
        # Longer than the daemon can run: reads past the end of a file PCM repeat stale data.
        total = args.warmup + args.seconds + args.interruptions * 4 + args.restarts * 6 + 120
        write_raw(self.mic_file, speech_like(total, MIC_RATE))
        self.bot = BotProcess(mode="bench", log_dir=self.work)
        self._runs = 0

    def new_daemon(self, max_turn_s: float = 3600.0) -> DaemonProcess:
        self._runs += 1
        run_dir = self.work / f"daemon-{self._runs}"
        alsa = AlsaFileConfig(run_dir / "alsa")
        alsa.add_capture("mic", self.mic_file).add_playback("spk", run_dir / "spk.raw")
        return DaemonProcess(
            run_dir,
            bot_url=self.bot.url,
            alsa=alsa,
            # File devices have no echo path: the front-end's cost is measured on the room tier (--tier room).
            config={"push_to_talk": {"max_turn_s": max_turn_s}, "frontend": {"mode": "off"}},
        )

    def startup_times(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            daemon = self.new_daemon()
            daemon.start()
            try:
                times.append(daemon.wait_ready())
            finally:
                daemon.stop()
        return times

    def daemon_window(self, daemon: DaemonProcess) -> tuple[Window, float, dict[str, Any], dict[str, Any]]:
        """Idle a while, then talk (a held button) and measure a steady window.

        Returns the window, the idle CPU (fraction of a core) and the status before and after the window.
        """
        daemon.wait_status(lambda s: s["link"]["state"] == "ready", 20, "the link to be ready")
        time.sleep(1.0)
        idle_s = min(10.0, self.args.seconds)
        cpu0, t0 = daemon.cpu_seconds(), time.monotonic()
        time.sleep(idle_s)
        idle = (daemon.cpu_seconds() - cpu0) / (time.monotonic() - t0)
        daemon.key(" ")
        daemon.wait_status(lambda s: s["audio"]["playback"]["frames_played_total"] > 0, 10, "echo played")
        time.sleep(self.args.warmup)
        before = daemon.status() or {}

        def down() -> int:
            snap = daemon.status() or {}
            return int(snap.get("link", {}).get("received_audio_bytes_total", 0))

        window, _, _ = measure_window(daemon.pid, self.args.seconds, self.bot, down)
        after = daemon.status() or {}
        return window, idle, before, after

    def interruptions(self, daemon: DaemonProcess, n: int) -> dict[str, Any]:
        """n turns: release (the bot answers), the bot interrupts itself 1 s in, press again."""
        done = 0
        for _ in range(n):
            count = _samples(daemon.status(), "interruption")
            mark = self.bot.mark()
            daemon.key(" ")  # release: the bot says its answer and cuts it short
            try:
                self.bot.wait_for(
                    lambda e: e["event"] == "interrupted" and e.get("by") == "bot",
                    BENCH_INTERRUPT_AFTER_S + 5,
                    since=mark,
                )
                daemon.wait_status(
                    lambda s, c=count: _samples(s, "interruption") > c, 3, "the flush to be timed"
                )
                done += 1
            except (TimeoutError, RuntimeError) as e:
                print(f"  interruption cycle failed: {e}", file=sys.stderr)
            daemon.key(" ")  # press: the next turn
            time.sleep(0.5)
        snap = daemon.status() or {}
        return {"cycles": n, "timed": done, **snap.get("latency", {}).get("interruption", {})}

    def restarts(self, daemon: DaemonProcess, n: int) -> dict[str, Any]:
        """Kill -9 and restart the bot n times; time from the bot accepting again to the session's bot-ready."""
        to_ready, to_connect, handshake = [], [], []
        for _ in range(n):
            daemon.wait_status(lambda s: s["link"]["state"] == "ready", 30, "the link to be ready")
            # A session younger than this ends a "flapping" streak's attempt, not a healthy session: the
            # backoff would keep growing. Each kill here ends a session that proved the bot healthy.
            time.sleep(DEFAULT_STABLE_AFTER + 1.0)
            self.bot.kill()
            self.bot.start()
            self.bot.wait_listening()
            gen = self.bot.generation
            listening = self.bot.listening_event(gen)["t"]
            try:
                connected = self.bot.wait_for(
                    lambda e, g=gen: e["event"] == "client_connected" and e["gen"] == g, 40
                )
                ready = self.bot.wait_for(lambda e, g=gen: e["event"] == "client_ready" and e["gen"] == g, 10)
            except TimeoutError:
                print("  reconnect cycle: the daemon did not come back within 40 s", file=sys.stderr)
                continue
            daemon.wait_status(lambda s: s["link"]["state"] == "ready", 10, "the link to be ready again")
            to_ready.append(ready["t"] - listening)
            to_connect.append(connected["t"] - listening)
            handshake.append(ready["t"] - connected["t"])
        return {
            "restarts": n,
            "recovered": len(to_ready),
            "accept_to_ready_s": _dist(to_ready),
            "accept_to_connected_s": _dist(to_connect),
            "connected_to_ready_s": _dist(handshake),
        }

    # --- the baseline ---------------------------------------------------------------------------------

    def baseline_window(self) -> Window:
        out = self.work / "baseline-bot.raw"
        cmd = [
            sys.executable,
            "-m",
            "voiceterm_devkit.baseline_client",
            "--url",
            self.bot.url,
            "--mic",
            str(self.mic_file),
            "--out",
            str(out),
            "--seconds",  # a safety net: it ends by itself should this script die
            str(self.args.warmup + self.args.seconds + 60),
        ]
        with open(self.work / "baseline.log", "ab") as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + 60
            for line in proc.stdout:
                if json.loads(line).get("event") == "first_audio":
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the baseline client never received bot audio")
            else:
                raise RuntimeError(
                    f"the baseline client exited ({proc.wait()}); see {self.work / 'baseline.log'}"
                )
            time.sleep(self.args.warmup)

            def down() -> int:
                return out.stat().st_size

            window, _, _ = measure_window(proc.pid, self.args.seconds, self.bot, down)
            return window
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    # --- the whole run ----------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        args = self.args
        results: dict[str, Any] = {"machine": machine_info(), "settings": vars(args).copy()}
        self.bot.start()
        self.bot.wait_listening()
        try:
            print(f"- time to READY: {args.startups} starts", flush=True)
            startups = self.startup_times(args.startups)

            daemon_windows, baseline_windows, idles = [], [], []
            latency_window: dict[str, Any] = {}
            latency_run: dict[str, Any] = {}
            for round_no in range(1, args.rounds + 1):
                print(f"- round {round_no}: voiceterm, {args.seconds:g} s of full-duplex audio", flush=True)
                daemon = self.new_daemon()
                daemon.start()
                try:
                    startups.append(daemon.wait_ready())
                    window, idle, before, after = self.daemon_window(daemon)
                    daemon_windows.append(window)
                    idles.append(idle)
                    if round_no == 1:
                        latency_window = _latency_between(before, after)
                        latency_run = after.get("latency", {})
                        print(f"- interruptions: {args.interruptions} turns", flush=True)
                        results["interruption"] = self.interruptions(daemon, args.interruptions)
                        print(f"- reconnects: {args.restarts} bot kill -9 / restarts", flush=True)
                        results["reconnect"] = self.restarts(daemon, args.restarts)
                        results["daemon_counters"] = _counters(daemon.status() or {})
                finally:
                    code = daemon.stop()
                    escaped = daemon.escaped_exceptions()
                results.setdefault("daemon_exits", []).append({"code": code, "escaped_exceptions": escaped})
                print(f"- round {round_no}: baseline (pipecat WebsocketClientTransport)", flush=True)
                if not self.bot.running:
                    self.bot.restart()
                baseline_windows.append(self.baseline_window())
        finally:
            self.bot.stop()

        # Other load on a shared machine only ever adds CPU time: the best round is the closest to the cost.
        mine = min(daemon_windows, key=lambda w: w.cpu_per_min)
        base = min(baseline_windows, key=lambda w: w.cpu_per_min)
        results["voiceterm"] = mine.as_dict()
        results["voiceterm"]["idle_core_percent"] = round(min(idles) * 100, 3)
        results["baseline"] = base.as_dict()
        results["rounds"] = {
            "voiceterm": [w.as_dict() for w in daemon_windows],
            "baseline": [w.as_dict() for w in baseline_windows],
        }
        results["startup_s"] = _dist(startups)
        results["latency"] = {
            name: {
                "label": LATENCY_LABELS.get(name, name),
                "window": latency_window.get(name, {}),
                "run": run,
            }
            for name, run in latency_run.items()
            if name != "interruption"
        }
        results["checks"] = checks(results, mine, base)
        return results


def _samples(snap: dict[str, Any] | None, name: str) -> int:
    return int(((snap or {}).get("latency", {}).get(name) or {}).get("samples_total", 0))


def _latency_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, rec in after.get("latency", {}).items():
        earlier = before.get("latency", {}).get(name, {}).get("buckets", [])
        window = bucket_difference(rec.get("buckets", []), earlier)
        run_max = rec.get("max_ms")
        summary = summarize_buckets(window)
        if summary.max is not None and run_max is not None:
            summary = summarize_buckets(window, max_s=min(summary.max, run_max / 1000))
        out[name] = {**summary.as_ms(), "buckets": window}
    return out


def _counters(snap: dict[str, Any]) -> dict[str, Any]:
    link = snap.get("link", {})
    playback = snap.get("audio", {}).get("playback", {})
    capture = snap.get("audio", {}).get("capture", {})
    return {
        "link": {k: v for k, v in link.items() if k.endswith("_total")},
        "capture": capture,
        "playback": playback,
    }


def _dist(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(values),
        "min": round(ordered[0], 4),
        "p50": round(statistics.median(ordered), 4),
        "max": round(ordered[-1], 4),
        "all": [round(v, 4) for v in values],
    }


# --- targets ----------------------------------------------------------------------------------------------


def _check(name: str, value: float | None, limit: float, unit: str, *, fmt: str = "{:.3g}") -> dict[str, Any]:
    """One target: met, or missed with the gap (how much over, and how many times the limit)."""
    if value is None or math.isnan(value):
        return {
            "target": name,
            "value": None,
            "limit": limit,
            "unit": unit,
            "met": False,
            "gap": "not measured",
        }
    met = value <= limit
    gap = "" if met else f"over by {fmt.format(value - limit)} {unit} ({value / limit:.1f}x the target)"
    return {"target": name, "value": value, "limit": limit, "unit": unit, "met": met, "gap": gap}


def checks(results: dict[str, Any], mine: Window, base: Window) -> list[dict[str, Any]]:
    out = [
        _check(
            "CPU <= 1/5 of the baseline",
            mine.cpu_s / base.cpu_s if base.cpu_s else None,
            TARGET_CPU_RATIO,
            "x",
        ),
        _check("CPU <= 1% of one core", mine.core_fraction * 100, TARGET_CPU_CORE * 100, "% of a core"),
        _check("peak RSS <= 35 MiB", mine.rss_peak_kib / MIB, TARGET_RSS_MIB, "MiB"),
        _check("steady RSS <= 35 MiB", mine.rss_steady_kib / MIB, TARGET_RSS_MIB, "MiB"),
        _check(
            "peak RSS <= 1/2 of the baseline", mine.rss_peak_kib / base.rss_peak_kib, TARGET_RSS_RATIO, "x"
        ),
        _check(
            "steady RSS <= 1/2 of the baseline",
            mine.rss_steady_kib / base.rss_steady_kib,
            TARGET_RSS_RATIO,
            "x",
        ),
        _check(
            "time to READY (median) <= 300 ms",
            results["startup_s"].get("p50", float("nan")) * 1000,
            300,
            "ms",
        ),
    ]
    window = results["latency"]
    for name in ("capture_to_send", "receive_to_playout"):
        p99 = (window.get(name, {}).get("window") or {}).get("p99_ms")
        out.append(_check(f"{name} p99 <= 2 ms", p99, TARGET_P99_MS, "ms"))
    interruption = results.get("interruption", {})
    out.append(
        _check(
            f"interruption max <= one period + ALSA buffer ({TARGET_INTERRUPT_MS} ms)",
            interruption.get("max_ms"),
            TARGET_INTERRUPT_MS,
            "ms",
        )
    )
    return out


# --- output ----------------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_report(results: dict[str, Any], json_path: Path, png_path: Path | None) -> None:
    m, b = results["voiceterm"], results["baseline"]
    machine = results["machine"]
    print()
    print(
        f"voiceterm {machine['voiceterm']} vs pipecat-ai {machine['pipecat_ai']} WebsocketClientTransport, "
        f"{machine['cores']} x {machine['cpu_model']}, Python {machine['python']}, "
        f"{results['settings']['seconds']:g} s windows, best of {results['settings']['rounds']}"
    )
    rows = [
        ("CPU s per minute of full-duplex audio", m["cpu_s_per_min"], b["cpu_s_per_min"], "{:.3f}"),
        ("  = % of one core", m["core_percent"], b["core_percent"], "{:.2f}"),
        (
            "  of which the event loop's thread",
            m["main_thread_core_percent"],
            b["main_thread_core_percent"],
            "{:.2f}",
        ),
        (
            "  of which other threads",
            m["other_threads_core_percent"],
            b["other_threads_core_percent"],
            "{:.2f}",
        ),
        ("% of one core idle (connected, no turn)", m["idle_core_percent"], None, "{:.2f}"),
        ("RSS steady (MiB)", m["rss_steady_mib"], b["rss_steady_mib"], "{:.1f}"),
        ("RSS peak (MiB)", m["rss_peak_mib"], b["rss_peak_mib"], "{:.1f}"),
        ("mic audio up (x real time)", m["up_realtime"], b["up_realtime"], "{:.2f}"),
        ("bot audio down (x real time)", m["down_realtime"], b["down_realtime"], "{:.2f}"),
    ]
    print(f"  {'':<40} {'voiceterm':>10} {'baseline':>10} {'ratio':>7}")
    for label, mine, base, fmt in rows:
        ratio = f"{mine / base:.2f}" if base and not label.startswith("  of which") else "-"
        shown = "-" if base is None else fmt.format(base)
        print(f"  {label:<40} {fmt.format(mine):>10} {shown:>10} {ratio:>7}")
    s = results["startup_s"]
    print(
        f"  time to READY=1 from process start: p50 {s['p50'] * 1000:.0f} ms, max {s['max'] * 1000:.0f} ms (n={s['n']})"
    )
    print("  latency inside the daemon (steady window; ms):")
    print(f"    {'':<78} {'p50':>7} {'p99':>7} {'max':>7} {'n':>6}")
    for data in results["latency"].values():
        w = data["window"]
        print(
            f"    {data['label']:<78} {_ms(w.get('p50_ms')):>7} {_ms(w.get('p99_ms')):>7} "
            f"{_ms(w.get('max_ms')):>7} {w.get('samples_total', 0):>6}"
        )
    i = results.get("interruption", {})
    print(
        f"    {LATENCY_LABELS['interruption']:<78} {_ms(i.get('p50_ms')):>7} {_ms(i.get('p99_ms')):>7} "
        f"{_ms(i.get('max_ms')):>7} {i.get('samples_total', 0):>6}"
    )
    r = results.get("reconnect", {})
    if r.get("recovered"):
        a, h = r["accept_to_ready_s"], r["connected_to_ready_s"]
        print(
            f"  reconnect after kill -9, bot accepting again -> bot-ready: p50 {a['p50'] * 1000:.0f} ms, "
            f"max {a['max'] * 1000:.0f} ms ({r['recovered']}/{r['restarts']} restarts; backoff wait included); "
            f"WebSocket open -> bot-ready: p50 {h['p50'] * 1000:.1f} ms, max {h['max'] * 1000:.1f} ms"
        )
    print("  targets:")
    for c in results["checks"]:
        value = "-" if c["value"] is None else f"{c['value']:.3g} {c['unit']}"
        verdict = "met" if c["met"] else f"MISSED: {c['gap']}"
        print(f"    {c['target']:<58} {value:>18}  {verdict}")
    for exit_info in results.get("daemon_exits", []):
        if exit_info["code"] != 0 or exit_info["escaped_exceptions"]:
            print(f"  daemon exit: {exit_info}")
    print(
        "  notes: the baseline writes bot audio straight to a file and reads the mic from memory; the daemon\n"
        "  plays through ALSA (file PCMs paced by the wall clock, as a sound card would pace it) and reads\n"
        "  the mic from ALSA. CPU is /proc utime+stime of each process over the same steady window."
    )
    print(f"results: {json_path}" + (f"; plot: {png_path}" if png_path else ""))


def plot(results: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("matplotlib is not installed (the bench extra): no plot", file=sys.stderr)
        return None
    panels = [(name, data["label"], data["window"]) for name, data in results["latency"].items()]
    interruption = results.get("interruption", {})
    panels.append(("interruption", LATENCY_LABELS["interruption"], interruption))
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.4 * len(panels)), constrained_layout=True)
    for ax, (name, label, data) in zip(np.atleast_1d(axes), panels, strict=True):
        buckets = data.get("buckets") or []
        if buckets:
            uppers = np.array([u for u, _ in buckets], dtype=float) / 1000.0  # ms
            counts = np.array([n for _, n in buckets], dtype=float)
            lowers = uppers / (1 + 1 / 16)
            ax.bar(lowers, counts, width=uppers - lowers, align="edge", color="#4878a8")
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        for key, style in (("p50_ms", "--"), ("p99_ms", ":")):
            if data.get(key) is not None:
                ax.axvline(
                    data[key],
                    color="black",
                    linestyle=style,
                    linewidth=1,
                    label=f"{key[:3]} {data[key]:.3g} ms",
                )
        limit = {
            "interruption": TARGET_INTERRUPT_MS,
            "capture_to_send": TARGET_P99_MS,
            "receive_to_playout": TARGET_P99_MS,
        }.get(name)
        if limit is not None:
            ax.axvline(limit, color="#c03030", linewidth=1, label=f"target {limit:g} ms")
        ax.set_title(f"{label} (n={data.get('samples_total', 0)})", fontsize=9)
        ax.set_xlabel("ms")
        ax.set_ylabel("samples")
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"voiceterm latency, {results['machine']['cpu_model']}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="measured window per process (default 60)"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of audio before the window")
    parser.add_argument("--rounds", type=int, default=1, help="daemon/baseline window pairs; the best counts")
    parser.add_argument("--startups", type=int, default=5, help="extra daemon starts timed to READY")
    parser.add_argument("--interruptions", type=int, default=10, help="bot interruptions timed")
    parser.add_argument("--restarts", type=int, default=10, help="bot kill -9 / restart cycles timed")
    parser.add_argument("--quick", action="store_true", help="10 s windows, 3 of each cycle")
    parser.add_argument("--out", default="out/bench", help="directory for results.json and latency.png")
    parser.add_argument(
        "--tier",
        choices=("files", "room"),
        default="files",
        help="files: file PCMs paced by the wall clock; room: clocked PulseAudio devices with an echo path, "
        "device pacing, and the audio front-end's cost (voiceterm_devkit.bench_room)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.startups, args.interruptions, args.restarts = 10.0, 3, 3, 3
    args.rounds = max(1, args.rounds)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.tier == "room":
        from voiceterm_devkit.bench_room import RoomBench, print_frontend_cost

        results = RoomBench(args, out_dir).run()
    else:
        results = Bench(args, out_dir).run()
    png = plot(results, out_dir / "latency.png")
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print_report(results, json_path, png)
    if args.tier == "room":
        print_frontend_cost(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
