"""The real `voiceterm run` in the benchmark: start-up time, the connected-and-idle hold phase, the full-duplex
window, interruptions, reconnects, and the trio thread's epoll_wait count under strace.

Every daemon runs on a tier's devices (bench_tiers) against the bench bot, in hold mode with the keyboard on a
pipe: a space presses the button (the turn opens and mic audio streams to the echo bot, which sends it back),
another releases it. The daemons measured for CPU get the thread-name shim (thread_names); the ones timed to
READY do not, so nothing is added to the start-up path.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from voiceterm.core.latency import bucket_difference, summarize_buckets
from voiceterm.core.reconnect import DEFAULT_STABLE_AFTER
from voiceterm_devkit.bench_clients import bot_audio_in_between
from voiceterm_devkit.bench_proc import ThreadNamer
from voiceterm_devkit.bench_tiers import WithEnv
from voiceterm_devkit.bench_window import Window, dist, measure
from voiceterm_devkit.bot import BotProcess
from voiceterm_devkit.daemonproc import DaemonProcess
from voiceterm_devkit.echo_bot import BENCH_INTERRUPT_AFTER_S
from voiceterm_devkit.thread_names import with_thread_names

# epoll_wait(fd, events, maxevents, timeout) = n; epoll_pwait(fd, events, maxevents, timeout, sigmask, size) = n
EPOLL_LINE = re.compile(
    r"^epoll_(?:wait\(.*, \d+, (?P<timeout>-?\d+)\)|pwait\(.*, \d+, (?P<ptimeout>-?\d+), (?:NULL|\[.*?\]|0x[0-9a-f]+), \d+\))"
    r"\s+= \d+"
)


class DaemonRuns:
    """Daemons on one tier's devices, against `bot`."""

    def __init__(self, work: Path, bot: BotProcess, tier: Any, args: Any, name: str = "daemon") -> None:
        self.work = work
        self.name = name
        self.bot = bot
        self.tier = tier
        self.args = args
        self._runs = 0
        self._maps: dict[DaemonProcess, Path] = {}  # the thread-name map of each daemon with the shim

    def new_daemon(
        self, *, frontend: str = "off", names: bool = True, audio: dict[str, Any] | None = None
    ) -> DaemonProcess:
        self._runs += 1
        run_dir = self.work / f"{self.name}-{self.tier.name}-{self._runs}"
        devices: Any = self.tier.devices(run_dir)
        if names:
            base = {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}
            devices = WithEnv(devices, with_thread_names(base, run_dir / "threads.tsv", run_dir / "shim"))
        daemon = DaemonProcess(
            run_dir,
            bot_url=self.bot.url,
            alsa=devices,
            config={
                "audio": {"pacing": self.tier.pacing, **(audio or {})},
                "push_to_talk": {"mode": "hold", "max_turn_s": 3600.0},
                "frontend": {"mode": frontend},
            },
        )
        if names:
            self._maps[daemon] = run_dir / "threads.tsv"
        return daemon

    def namer(self, daemon: DaemonProcess) -> ThreadNamer:
        return ThreadNamer(daemon.pid, self._maps.get(daemon))

    def startup_times(self, n: int) -> list[float]:
        """Seconds from process start to READY=1, `n` fresh daemons without the shim.

        The daemon's modules are compiled to bytecode first, as `pip install` leaves them on a device: this
        checkout's editable install, run with PYTHONDONTWRITEBYTECODE (as here), would compile them from
        source at every start, ~45 ms that no installed daemon pays."""
        import compileall

        import voiceterm

        compileall.compile_dir(Path(voiceterm.__file__).parent, quiet=1)
        times = []
        for _ in range(n):
            daemon = self.new_daemon(names=False)
            daemon.start()
            try:
                times.append(daemon.wait_ready())
            finally:
                daemon.stop()
        return times

    def wait_connected(self, daemon: DaemonProcess) -> None:
        daemon.wait_ready()
        daemon.wait_status(lambda s: s["link"]["state"] == "ready", 30, "the link to be ready")
        time.sleep(1.0)  # the connection's own traffic (client-ready, bot-ready) is over

    def idle_window(self, daemon: DaemonProcess, seconds: float) -> Window:
        """Connected, hold mode, no turn, the bot silent."""
        before = daemon.status() or {}
        window = measure(daemon.pid, seconds, namer=self.namer(daemon))
        after = daemon.status() or {}
        window.extra["turn_open"] = bool((after.get("terminal") or {}).get("turn"))
        window.extra["mic_chunks_sent"] = _sent(after) - _sent(before)
        return window

    def start_duplex(self, daemon: DaemonProcess) -> None:
        """Press (the turn opens), wait for the echo, warm up."""
        daemon.key(" ")
        daemon.wait_status(lambda s: s["audio"]["playback"]["frames_played_total"] > 0, 10, "echo played")
        time.sleep(self.args.warmup)

    def measure_duplex(self, daemon: DaemonProcess) -> tuple[Window, dict[str, Any], dict[str, Any]]:
        """One full-duplex window: the window and the statuses around it."""
        before = daemon.status() or {}

        def down() -> int:
            snap = daemon.status() or {}
            return int(snap.get("link", {}).get("received_audio_bytes_total", 0))

        window = measure(
            daemon.pid,
            self.args.seconds,
            namer=self.namer(daemon),
            down_bytes=down,
            up_bytes=lambda t0, t1: bot_audio_in_between(self.bot, t0, t1),
        )
        after = daemon.status() or {}
        playback = (after.get("audio") or {}).get("playback") or {}
        window.extra["resampled_chunks_total"] = playback.get("resampled_chunks_total")
        window.extra["frontend"] = after.get("frontend") or {}
        window.extra["frontend_cpu_s"] = _frontend_cpu(after) - _frontend_cpu(before)
        return window, before, after

    def duplex_window(self, daemon: DaemonProcess) -> tuple[Window, dict[str, Any], dict[str, Any]]:
        self.start_duplex(daemon)
        return self.measure_duplex(daemon)

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
            "accept_to_ready_s": dist(to_ready),
            "accept_to_connected_s": dist(to_connect),
            "connected_to_ready_s": dist(handshake),
        }


# --- strace: the trio thread's epoll_wait returns ---------------------------------------------------------


def parse_epoll_trace(text: str) -> dict[str, int]:
    """From `strace -e trace=epoll_wait,epoll_pwait` output of one thread: every call that returned, and the
    blocking ones among them (timeout not 0: the thread slept and was woken, by an event or the timeout).
    A call cut by the attach or the detach is not counted."""
    calls = blocking = 0
    for line in text.splitlines():
        m = EPOLL_LINE.search(line)
        if m is None:
            continue
        calls += 1
        if int(m.group("timeout") or m.group("ptimeout")) != 0:
            blocking += 1
    return {"calls": calls, "blocking": blocking}


def epoll_waits_per_s(tid: int, seconds: float, trace_file: Path) -> dict[str, float] | None:
    """epoll_wait calls per second of one thread (strace attached to it alone for `seconds`), and the blocking
    ones: each blocking call that returned is one wake-up of the event loop. None without strace or without
    permission to attach. strace stops the thread at every traced call, so no CPU figure is taken meanwhile."""
    if shutil.which("strace") is None:
        return None
    proc = subprocess.Popen(
        ["strace", "-e", "trace=epoll_wait,epoll_pwait", "-p", str(tid), "-o", str(trace_file)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    if proc.returncode != 0 and "attach" in err.lower() and "not permitted" in err.lower():
        return None
    try:
        counts = parse_epoll_trace(trace_file.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    return {
        "calls_per_s": round(counts["calls"] / elapsed, 1),
        "blocking_per_s": round(counts["blocking"] / elapsed, 1),
    }


# --- what the status says --------------------------------------------------------------------------------


def _sent(snap: dict[str, Any]) -> int:
    return int((snap.get("link") or {}).get("sent_audio_total", 0))


def _frontend_cpu(snap: dict[str, Any]) -> float:
    return float((snap.get("frontend") or {}).get("cpu_seconds_total") or 0.0)


def _samples(snap: dict[str, Any] | None, name: str) -> int:
    return int(((snap or {}).get("latency", {}).get(name) or {}).get("samples_total", 0))


def latency_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Each latency recorder over the window between two status snapshots (its buckets' difference)."""
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


def counters(snap: dict[str, Any]) -> dict[str, Any]:
    link = snap.get("link", {})
    audio = snap.get("audio", {})
    return {
        "link": {k: v for k, v in link.items() if k.endswith("_total")},
        "capture": audio.get("capture", {}),
        "playback": audio.get("playback", {}),
    }


def stop_daemon(daemon: DaemonProcess) -> dict[str, Any]:
    """Stop it; its exit status and any exception that escaped a task (both must be clean)."""
    code = None
    with contextlib.suppress(Exception):
        code = daemon.stop()
    return {"code": code, "escaped_exceptions": daemon.escaped_exceptions()}


__all__ = [
    "DaemonRuns",
    "counters",
    "epoll_waits_per_s",
    "latency_between",
    "parse_epoll_trace",
    "stop_daemon",
]
