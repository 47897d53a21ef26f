"""One measured window of one client process (voiceterm, the floor or pipecat's client): CPU per thread and in
total, wake-ups, RSS, and how much audio went each way; plus the small statistics the report uses.

CPU is the sum of the threads' schedstat run time (exact, nanoseconds) over the window; the process's
utime+stime (clock ticks, a sample per tick, so about ±10 % on 3 % of a core over 30 s) is kept beside it as
`cpu_ticks_s`, and is the figure when the kernel has no schedstat. A thread that ended inside the window is in
the ticks only (trio's and pipecat's worker threads come and go; in steady streaming none do).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voiceterm_devkit.bench_proc import ThreadFigures, ThreadNamer, machine_cpu, read_process, thread_figures
from voiceterm_devkit.daemonproc import RssSampler, memory_kib

MIB = 1024.0
MIC_RATE = 16000
BOT_RATE = 24000

ROLES = ("event loop", "capture", "playback", "pulse plugin", "other")
PULSE_THREAD = "threaded-ml"  # libpulse's client thread, one per PCM opened through ALSA's pulse plugin


def role(thread: ThreadFigures) -> str:
    """Which job a thread does, from its name (the same for the three clients). The room tier's devices go
    through ALSA's pulse plugin, whose threads run in the client's process; a board's hw: device has none."""
    if thread.name == "main":
        return "event loop"
    if thread.name == PULSE_THREAD:
        return "pulse plugin"
    for name in ("capture", "playback"):
        if name in thread.name:
            return name
    return "other"


@dataclass
class Window:
    """CPU and memory of one process over a window, and how much audio went each way."""

    cpu_s: float  # sum of the threads' run time (schedstat), or the ticks without schedstat
    cpu_ticks_s: float  # process utime + stime
    wall_s: float
    rss_steady_kib: float
    rss_peak_kib: int
    up_realtime: float | None  # mic audio the bot received in the window / the window's length
    down_realtime: float | None  # bot audio the client took in / the window's length
    threads: list[ThreadFigures] = field(default_factory=list)
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)  # the 1, 5, 15 min load average at the window's end
    machine_busy_percent: float = 0.0  # all cores together, every process (this one and the bot included)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def core_percent(self) -> float:
        return self.cpu_s / self.wall_s * 100

    @property
    def own_core_percent(self) -> float:
        """% of a core without the pulse plugin's threads (what the program itself spends)."""
        return self.core_percent - sum(t.core_percent for t in self.threads if role(t) == "pulse plugin")

    @property
    def cpu_per_min(self) -> float:
        return self.cpu_s / self.wall_s * 60.0

    def thread(self, name: str) -> ThreadFigures | None:
        return next((t for t in self.threads if t.name == name), None)

    def by_role(self) -> dict[str, dict[str, float]]:
        """% of a core and wake-ups/s summed per role."""
        out = {r: {"core_percent": 0.0, "wakeups_per_s": 0.0, "threads": 0} for r in ROLES}
        for t in self.threads:
            cell = out[role(t)]
            cell["core_percent"] += t.core_percent
            cell["wakeups_per_s"] += t.wakeups_per_s
            cell["threads"] += 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "cpu_s": round(self.cpu_s, 4),
            "cpu_ticks_s": round(self.cpu_ticks_s, 3),
            "wall_s": round(self.wall_s, 3),
            "cpu_s_per_min": round(self.cpu_per_min, 4),
            "core_percent": round(self.core_percent, 3),
            "own_core_percent": round(self.own_core_percent, 3),
            "rss_steady_mib": round(self.rss_steady_kib / MIB, 2),
            "rss_peak_mib": round(self.rss_peak_kib / MIB, 2),
            "up_realtime": None if self.up_realtime is None else round(self.up_realtime, 3),
            "down_realtime": None if self.down_realtime is None else round(self.down_realtime, 3),
            "by_role": {r: {k: round(v, 3) for k, v in cell.items()} for r, cell in self.by_role().items()},
            "threads": [t.as_dict() for t in self.threads],
            "loadavg": [round(x, 2) for x in self.load],
            "machine_busy_percent": round(self.machine_busy_percent, 1),
            **self.extra,
        }


def measure(
    pid: int,
    seconds: float,
    *,
    namer: ThreadNamer | None = None,
    down_bytes: Callable[[], int] | None = None,
    up_bytes: Callable[[float, float], int] | None = None,
) -> Window:
    """Measure `pid` for `seconds`. `down_bytes()` reads the client's count of bot audio bytes taken in;
    `up_bytes(t0, t1)` the mic bytes the bot reported receiving between two time.monotonic() times."""
    sampler = RssSampler(pid).start()
    down0 = down_bytes() if down_bytes else 0
    busy0, total0 = machine_cpu()
    start = read_process(pid)
    time.sleep(seconds)
    end = read_process(pid)
    busy1, total1 = machine_cpu()
    down1 = down_bytes() if down_bytes else 0
    samples = [kib for _, kib in sampler.stop()]
    # The kernel updates VmHWM lazily: a sample may be above it.
    peak = max(memory_kib(pid)["VmHWM"], *samples)
    wall = end.t - start.t
    threads = thread_figures(start, end, namer)
    exact = all(t.exact for t in threads)
    ticks = end.cpu_s - start.cpu_s
    cpu = sum(t.core_percent for t in threads) / 100 * wall if exact else ticks
    up = None
    if up_bytes is not None:
        # The bot reports mic audio every 200 ms: read its reports for the window once they are in.
        time.sleep(0.3)
        up = up_bytes(start.t + 0.2, end.t + 0.2) / (2 * MIC_RATE) / wall
    return Window(
        cpu_s=cpu,
        cpu_ticks_s=ticks,
        wall_s=wall,
        rss_steady_kib=statistics.median(samples) if samples else float("nan"),
        rss_peak_kib=peak,
        up_realtime=up,
        down_realtime=(down1 - down0) / (2 * BOT_RATE) / wall if down_bytes else None,
        threads=threads,
        load=os.getloadavg(),
        machine_busy_percent=(busy1 - busy0) / max(1, total1 - total0) * 100,
    )


def dist(values: list[float], digits: int = 4) -> dict[str, Any]:
    """n, min, p50, max and every value, in the order measured."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(values),
        "min": round(ordered[0], digits),
        "p50": round(statistics.median(ordered), digits),
        "max": round(ordered[-1], digits),
        "all": [round(v, digits) for v in values],
    }


__all__ = ["BOT_RATE", "MIB", "MIC_RATE", "PULSE_THREAD", "ROLES", "Window", "dist", "measure", "role"]
