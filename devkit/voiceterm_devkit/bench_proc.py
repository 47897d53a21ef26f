"""What the benchmark reads from /proc about a process and each of its threads, and how two readings become
a window's figures.

Per thread: CPU time from /proc/PID/task/TID/schedstat (nanoseconds the thread ran, exact) when the kernel
has it, else utime+stime from .../stat (clock ticks, 10 ms); both are kept. Wake-ups from .../status:
`voluntary_ctxt_switches` counts each time the thread blocked (every block ends in a wake-up: an epoll_wait
or a futex that returned, a sleep that ended), `nonvoluntary_ctxt_switches` each time it was preempted while
it could still run (other load on the machine, not the program's own doing). Thread names come from .../comm
when the program set OS thread names, else from the map `thread_names` writes for the bench (the Python
names), else "thread-TID".

Per process: utime+stime of /proc/PID/stat (all threads, the ended ones included); memory comes from
`daemonproc.memory_kib` and `RssSampler`.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- parsing (pure) ---------------------------------------------------------------------------------


def parse_stat_cpu_ticks(text: str, *, children: bool = False) -> int:
    """utime + stime (and cutime + cstime with `children`) of a /proc .../stat line, in clock ticks."""
    # The command name (field 2) may hold spaces and parentheses: split after its closing parenthesis.
    fields = text[text.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks


def parse_schedstat_ns(text: str) -> int:
    """Nanoseconds on a CPU, the first field of /proc .../schedstat."""
    return int(text.split(maxsplit=1)[0])


def parse_status(text: str, keys: tuple[str, ...]) -> dict[str, int]:
    """The integer value (first word) of each of `keys` in a /proc .../status file."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            out[key] = int(value.split()[0])
    return out


def parse_machine_cpu(text: str) -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs from /proc/stat's first line (idle and iowait are not busy)."""
    fields = [int(x) for x in text.splitlines()[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - fields[3] - fields[4], total


def machine_cpu() -> tuple[int, int]:
    with open("/proc/stat", encoding="ascii") as f:
        return parse_machine_cpu(f.readline())


def parse_thread_map(text: str) -> dict[int, str]:
    """The `thread_names` map: one "TID<tab>name" per line; a later line for a TID wins (TIDs are reused)."""
    out = {}
    for line in text.splitlines():
        tid, sep, name = line.partition("\t")
        if sep and tid.isdigit() and name:
            out[int(tid)] = name
    return out


# --- reading -------------------------------------------------------------------------------------------


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


@dataclass(frozen=True, slots=True)
class ThreadReading:
    """One thread at one moment."""

    tid: int
    comm: str
    cpu_ns: int  # schedstat when there is one, else the ticks in nanoseconds
    ticks: int  # utime + stime
    voluntary: int
    nonvoluntary: int
    exact: bool  # cpu_ns came from schedstat


def read_thread(pid: int, tid: int) -> ThreadReading | None:
    """One thread's counters, or None when it has ended meanwhile."""
    base = f"/proc/{pid}/task/{tid}"
    try:
        comm = _read(f"{base}/comm").strip()
        ticks = parse_stat_cpu_ticks(_read(f"{base}/stat"))
        switches = parse_status(
            _read(f"{base}/status"), ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
        )
    except (OSError, ValueError):
        return None
    exact = True
    try:
        cpu_ns = parse_schedstat_ns(_read(f"{base}/schedstat"))
    except (OSError, ValueError, IndexError):
        cpu_ns, exact = ticks * 1_000_000_000 // CLOCK_TICKS, False
    return ThreadReading(
        tid,
        comm,
        cpu_ns,
        ticks,
        switches.get("voluntary_ctxt_switches", 0),
        switches.get("nonvoluntary_ctxt_switches", 0),
        exact,
    )


@dataclass(frozen=True, slots=True)
class ProcessReading:
    """A process and all its threads at one moment (time.monotonic() `t`)."""

    pid: int
    t: float
    cpu_s: float  # process utime + stime
    threads: dict[int, ThreadReading]


def read_process(pid: int) -> ProcessReading:
    t = time.monotonic()
    cpu = parse_stat_cpu_ticks(_read(f"/proc/{pid}/stat")) / CLOCK_TICKS
    threads = {}
    for name in os.listdir(f"/proc/{pid}/task"):
        reading = read_thread(pid, int(name))
        if reading is not None:
            threads[reading.tid] = reading
    return ProcessReading(pid, t, cpu, threads)


# --- a window: two readings ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThreadFigures:
    """One thread over a window."""

    name: str
    tid: int
    core_percent: float
    wakeups_per_s: float  # voluntary context switches per second
    preempted_per_s: float  # nonvoluntary context switches per second
    exact: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tid": self.tid,
            "core_percent": round(self.core_percent, 3),
            "wakeups_per_s": round(self.wakeups_per_s, 1),
            "preempted_per_s": round(self.preempted_per_s, 1),
            "cpu_source": "schedstat" if self.exact else "utime+stime",
        }


@dataclass
class ThreadNamer:
    """Names a process's threads: OS names the program set, else the bench's map of Python names."""

    pid: int
    map_file: Path | None = None
    _map: dict[int, str] = field(default_factory=dict)

    def name(self, reading: ThreadReading, process_comm: str) -> str:
        if reading.tid == self.pid:
            return "main"
        if reading.comm and reading.comm != process_comm:
            return reading.comm
        if reading.tid not in self._map and self.map_file is not None:
            with contextlib.suppress(OSError):
                self._map = parse_thread_map(self.map_file.read_text(encoding="utf-8", errors="replace"))
        if reading.tid in self._map:
            return self._map[reading.tid]
        # With a map, a thread missing from it was not started by Python's threading (a C library's own).
        return f"native-{reading.tid}" if self.map_file is not None else f"thread-{reading.tid}"


def thread_figures(
    start: ProcessReading, end: ProcessReading, namer: ThreadNamer | None = None
) -> list[ThreadFigures]:
    """Each thread alive at `end` over the window (a thread born inside it counts from zero); busiest first.
    Threads that ended inside the window are in the process total only."""
    wall = end.t - start.t
    if wall <= 0:
        return []
    main = end.threads.get(end.pid)
    process_comm = main.comm if main is not None else ""
    out = []
    for tid, b in end.threads.items():
        a = start.threads.get(tid)
        cpu0, vol0, inv0 = (a.cpu_ns, a.voluntary, a.nonvoluntary) if a else (0, 0, 0)
        name = namer.name(b, process_comm) if namer else (b.comm or f"thread-{tid}")
        out.append(
            ThreadFigures(
                name=name,
                tid=tid,
                core_percent=max(0, b.cpu_ns - cpu0) / 1e9 / wall * 100,
                wakeups_per_s=max(0, b.voluntary - vol0) / wall,
                preempted_per_s=max(0, b.nonvoluntary - inv0) / wall,
                exact=b.exact,
            )
        )
    return sorted(out, key=lambda f: (f.tid != end.pid, -f.core_percent))


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


__all__ = [
    "CLOCK_TICKS",
    "ProcessReading",
    "ThreadFigures",
    "ThreadNamer",
    "ThreadReading",
    "loadavg",
    "machine_cpu",
    "parse_machine_cpu",
    "parse_schedstat_ns",
    "parse_stat_cpu_ticks",
    "parse_status",
    "parse_thread_map",
    "read_process",
    "read_thread",
    "thread_figures",
]
