"""The real `voiceterm run` as a subprocess, for the demo, the benchmark, the fault campaign and the tests,
with what they read from outside: file-backed ALSA devices, mock GPIO, the keyboard on a pipe (a held button
is one space), a fake NOTIFY_SOCKET, the status socket, the log lines with arrival times, and /proc CPU time
and memory.

The /proc readers take any pid, so the benchmark measures its baseline process the same way.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from voiceterm.config_render import toml_document
from voiceterm.io.control import read_status
from voiceterm_devkit.alsa_files import AlsaFileConfig
from voiceterm_devkit.bot import terminate

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TRACEBACK_MARKERS = ("Traceback (most recent call last)", "daemon failed", "device thread crashed")


# --- /proc ------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, its threads and its waited-for children, in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        stat = f.read()
    # The command name (field 2) may hold spaces and parentheses: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / CLOCK_TICKS


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU time of each thread of a process (thread id -> seconds); the main thread's id is
    the pid. Threads that ended are missing."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2 :].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (resident peak) of a process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds on a thread, between start() and stop()."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (monotonic, KiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"rss-{pid}")

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join(5)
        return self.samples

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), memory_kib(self.pid)["VmRSS"]))
            except (OSError, KeyError):
                return  # the process is gone
            self._stop.wait(self.interval)


# --- systemd's notify socket ------------------------------------------------------------------------


class NotifySink:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET; keeps every message with its arrival time."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="notify-sink")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._cond:
                self.messages.append((time.monotonic(), data.decode("utf-8", "replace")))
                self._cond.notify_all()

    def lines(self) -> list[str]:
        """Every line received so far, in order."""
        with self._cond:
            messages = list(self.messages)
        return [line for _, msg in messages for line in msg.splitlines()]

    def first(self, prefix: str, since: float = 0.0) -> float | None:
        """Arrival time of the first message at or after `since` holding a line starting with `prefix`."""
        with self._cond:
            messages = list(self.messages)
        for t, msg in messages:
            if t >= since and any(line.startswith(prefix) for line in msg.splitlines()):
                return t
        return None

    def wait_for(self, prefix: str, timeout: float, since: float = 0.0) -> float:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self.first(prefix, since)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {prefix} on the notify socket within {timeout:g} s")
                self._cond.wait(remaining)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


# --- the configuration ------------------------------------------------------------------------------


def merge_sections(
    base: Mapping[str, Mapping[str, Any]], extra: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    out = {name: dict(table) for name, table in base.items()}
    for name, table in (extra or {}).items():
        out.setdefault(name, {}).update(table)
    return out


# --- the daemon --------------------------------------------------------------------------------------


class DaemonProcess:
    """`voiceterm run --keyboard` on file PCMs named "mic" and "spk" (defined by the caller's `alsa`; `config`
    may name others).

    `workdir` receives the config (`voiceterm.toml`, written by the one TOML writer) and `daemon.log` (its
    stderr, with arrival times kept in `log_lines`); the notify, status and event sockets go there too, or
    to `socket_dir` when the workdir's path is too long for a unix socket.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        bot_url: str,
        alsa: AlsaFileConfig,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        python: str = sys.executable,
        socket_dir: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()  # the sockets need absolute paths
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket_dir = Path(socket_dir).resolve() if socket_dir is not None else self.workdir
        self.alsa = alsa
        self.status_path = str(self.socket_dir / "status.sock")
        self.events_path = str(self.socket_dir / "events.sock")
        self.config_path = self.workdir / "voiceterm.toml"
        self.log_path = self.workdir / "daemon.log"
        self.sections = merge_sections(
            {
                "bot": {"url": bot_url},
                "audio": {"capture_device": "mic", "playback_device": "spk", "pacing": "wall-clock"},
                "earcons": {"enabled": False},
                "gpio": {"pin_factory": "mock"},
                "status": {"socket": self.status_path},
                "events": {"socket": self.events_path},
            },
            config,
        )
        self.write_config()
        self.python = python
        self.extra_env = dict(env or {})  # set after the inherited watchdog and journal variables are dropped
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.sink: NotifySink | None = None
        self.log_lines: list[tuple[float, str]] = []
        self.keys: list[tuple[float, str]] = []  # (time.monotonic() after the write, the keys typed)
        self._log_cond = threading.Condition()
        self._reader: threading.Thread | None = None

    def write_config(self, changes: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """(Re)write the TOML file, with `changes` merged in (send SIGHUP to apply them live)."""
        self.sections = merge_sections(self.sections, changes)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(toml_document(self.sections), encoding="utf-8")
        os.replace(tmp, self.config_path)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.alsa.write()
        self.sink = NotifySink(self.socket_dir / "notify.sock")
        env = {
            **os.environ,
            **self.alsa.env,
            "NOTIFY_SOCKET": str(self.sink.path),
            "VOICETERM_CONFIG": str(self.config_path),
            "PYTHONUNBUFFERED": "1",
        }
        for var in ("WATCHDOG_PID", "WATCHDOG_USEC", "JOURNAL_STREAM"):
            env.pop(var, None)
        env.update(self.extra_env)
        exe = Path(self.python).parent / "voiceterm"
        self.log_lines = []
        self.keys = []
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [str(exe), "run", "--keyboard"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._reader = threading.Thread(
            target=self._read_log, args=(self.proc,), daemon=True, name="daemon-log"
        )
        self._reader.start()

    def _read_log(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        with open(self.log_path, "ab") as keep:
            for raw in proc.stderr:
                keep.write(raw)
                keep.flush()
                with self._log_cond:
                    self.log_lines.append((time.monotonic(), raw.decode("utf-8", "replace").rstrip("\n")))
                    self._log_cond.notify_all()

    def wait_ready(self, timeout: float = 20.0) -> float:
        """Seconds from Popen to READY=1 on the notify socket."""
        assert self.sink is not None
        try:
            return self.sink.wait_for("READY=1", timeout, since=self.started_at) - self.started_at
        except TimeoutError:
            raise RuntimeError(f"voiceterm not READY after {timeout:g} s; log:\n{self.log_tail()}") from None

    def status(self) -> dict[str, Any] | None:
        try:
            return read_status(self.status_path, timeout=2.0)
        except (OSError, ValueError):
            return None

    def wait_status(
        self, predicate: Callable[[dict[str, Any]], Any], timeout: float, what: str
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            snap = self.status()
            if snap is not None:
                with contextlib.suppress(KeyError, TypeError):
                    if predicate(snap):
                        return snap
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"voiceterm exited ({self.proc.returncode}) waiting for {what}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.02)

    def wait_log(
        self, pattern: str | Callable[[str], bool], timeout: float, since: float = 0.0
    ) -> tuple[float, str]:
        """The first log line at or after `since` matching the regular expression `pattern` (or for which
        the predicate `pattern` is true). TimeoutError when none comes, or the daemon exits first."""
        matches = re.compile(pattern).search if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._log_cond:
            while True:
                for t, line in self.log_lines:
                    if t >= since and matches(line):
                        return t, line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._log_ended():
                    raise TimeoutError(f"no log line matching {pattern!r} within {timeout:g} s")
                self._log_cond.wait(min(remaining, 0.1))

    def _log_ended(self) -> bool:
        # The reader thread ends after the daemon's last line: nothing more can match.
        return self._reader is not None and not self._reader.is_alive()

    def key(self, keys: str) -> float:
        """Type on the daemon's keyboard: " " talk toggle, "m" mute, "r" reconnect, "q" quit. Returns the
        time.monotonic() right after the write."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(keys.encode())
        self.proc.stdin.flush()
        now = time.monotonic()
        self.keys.append((now, keys))
        return now

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int | None:
        """The exit status once the daemon has exited, or None when it still runs after `timeout`."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def memory_kib(self) -> dict[str, int]:
        return memory_kib(self.pid)

    def escaped_exceptions(self) -> list[str]:
        """Log lines showing an exception that got out of a task (must stay empty)."""
        with self._log_cond:
            return [line for _, line in self.log_lines if any(m in line for m in TRACEBACK_MARKERS)]

    def log_tail(self, n: int = 30) -> str:
        with self._log_cond:
            return "\n".join(line for _, line in self.log_lines[-n:])

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM (SIGKILL after `timeout`); returns the exit status."""
        proc = self.proc
        if proc is None:
            return None
        terminate(proc, timeout)
        if self._reader is not None:
            self._reader.join(5)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if self.sink is not None:
            self.sink.close()
            self.sink = None
        return proc.returncode

    def __enter__(self) -> DaemonProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "DaemonProcess",
    "NotifySink",
    "RssSampler",
    "cpu_seconds",
    "memory_kib",
    "merge_sections",
    "thread_cpu_seconds",
]
