"""Python thread names for the benchmark's per-thread figures, from outside the measured program.

Before Python 3.14, `threading.Thread(name=...)` does not set the OS thread name: /proc/PID/task/TID/comm
shows the program's name for every thread, so per-thread CPU could not say which thread is the capture and
which the playback. `with_thread_names(env, map_file)` makes a child Python process record "TID<tab>name" for
every thread it starts, at the thread's start, in `map_file` (read back with `bench_proc.parse_thread_map`):
a `sitecustomize` on PYTHONPATH calls `install()`, which wraps `Thread._bootstrap_inner`. Cost: one
os.write() per thread started, nothing per chunk; nothing else in the program changes. Threads a program
names itself (trio's worker threads, PulseAudio's) keep their OS names, which `ThreadNamer` prefers.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path

ENV = "VOICETERM_BENCH_THREAD_MAP"
SITECUSTOMIZE = "import voiceterm_devkit.thread_names\nvoiceterm_devkit.thread_names.install()\n"


def _clean(name: str) -> str:
    return "".join(c if c.isprintable() and c != "\t" else " " for c in name)[:64]


def install() -> None:
    """In the measured process (from its sitecustomize): record every thread started from now on."""
    path = os.environ.get(ENV)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def record(tid: int, name: str) -> None:
        with contextlib.suppress(OSError):  # one short O_APPEND write: lines never interleave
            os.write(fd, f"{tid}\t{_clean(name)}\n".encode())

    original = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def bootstrap_inner(self: threading.Thread) -> None:
        record(threading.get_native_id(), self.name)
        original(self)

    threading.Thread._bootstrap_inner = bootstrap_inner  # type: ignore[attr-defined]


def with_thread_names(env: Mapping[str, str], map_file: Path, shim_dir: Path) -> dict[str, str]:
    """`env` for a child Python whose threads get recorded in `map_file` (`shim_dir` holds the sitecustomize)."""
    shim_dir.mkdir(parents=True, exist_ok=True)
    (shim_dir / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    with open(map_file, "w", encoding="utf-8"):
        pass  # empty: a new process, new TIDs
    path = [str(shim_dir), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    return {**env, "PYTHONPATH": os.pathsep.join(path), ENV: str(map_file)}


__all__ = ["ENV", "install", "with_thread_names"]
