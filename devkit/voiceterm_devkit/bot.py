"""Launches the real Pipecat test bot (`voiceterm_devkit.echo_bot`) as a subprocess on a loopback port.

`BotProcess` starts, kills (SIGKILL) and restarts the bot on the same port, waits until it accepts
connections, and collects its JSON-lines event log from a pipe in a reader thread. It works from plain
scripts (blocking `wait_for`) and from trio (`await wait_for_async`). The bot's stderr (pipecat's log)
goes to a file whose tail `stderr_tail()` returns for failure messages.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Event = dict[str, Any]
Predicate = Callable[[Event], bool]


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the bot binds it with SO_REUSEADDR, so restarts reuse it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def event_is(name: str, **fields: Any) -> Predicate:
    """A predicate matching events called `name` whose given fields have the given values."""

    def match(event: Event) -> bool:
        return event.get("event") == name and all(event.get(k) == v for k, v in fields.items())

    return match


def terminate(proc: subprocess.Popen[Any], timeout: float = 5.0) -> int:
    """SIGTERM a child, SIGKILL it if it is still there after `timeout`; its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class BotError(RuntimeError):
    """The bot did not start, or exited when it should not have."""


class BotProcess:
    """One echo bot on 127.0.0.1:`port`, restartable on the same port.

    Every event the bot writes gets two extra keys: ``gen`` (which start of the process wrote it: 1, 2 ...)
    and ``received`` (time.monotonic() when the launcher read it). A subclass may launch another bot by
    overriding `command()`, and give it a stdin pipe (`stdin`, written with `send`).
    """

    stdin: int = subprocess.DEVNULL

    def __init__(
        self,
        *,
        serializer: str = "protobuf",
        mode: str = "echo",
        in_rate: int = 16000,
        out_rate: int = 24000,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        python: str = sys.executable,
    ) -> None:
        self.serializer = serializer
        self.mode = mode
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.host = host
        self.port = port or find_free_port(host)
        self.extra_args = tuple(extra_args)
        self.python = python
        self._log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="voiceterm-bot-"))
        self.stderr_path = self._log_dir / f"bot-{self.port}.stderr"
        self.generation = 0
        self.started_at = 0.0
        self.startup_times: list[float] = []  # seconds from spawn to "listening", per start
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._events: list[Event] = []
        self._cond = threading.Condition()
        self._atexit_registered = False

    # --- life -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        return [
            self.python,
            "-m",
            "voiceterm_devkit.echo_bot",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--serializer",
            self.serializer,
            "--mode",
            self.mode,
            "--in-rate",
            str(self.in_rate),
            "--out-rate",
            str(self.out_rate),
            *self.extra_args,
        ]

    def start(self) -> None:
        """Spawn the bot (returns at once; see `wait_listening`)."""
        if self.running:
            raise BotError(f"bot on port {self.port} is already running")
        self.generation += 1
        self.started_at = time.monotonic()
        with open(self.stderr_path, "ab") as err:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=self.stdin,
                stdout=subprocess.PIPE,
                stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self._reader = threading.Thread(
            target=self._read_events,
            args=(self._proc, self.generation),
            name=f"bot-{self.port}-events",
            daemon=True,
        )
        self._reader.start()
        if not self._atexit_registered:
            # A test run that dies without stop() must not leave bots holding ports.
            atexit.register(self.kill)
            self._atexit_registered = True

    def send(self, line: str) -> None:
        """One line to the bot's stdin (a bot started with `stdin = subprocess.PIPE`)."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.poll() is not None:
            raise BotError(f"bot on port {self.port} is not running with a stdin pipe")
        proc.stdin.write((line + "\n").encode())
        proc.stdin.flush()

    def wait_listening(self, timeout: float = 20.0) -> float:
        """Block until this start of the bot accepts connections; returns the startup time in seconds."""
        gen = self.generation
        try:
            event = self.wait_for(
                lambda e: e.get("event") in ("listening", "process_exit") and e["gen"] == gen, timeout
            )
        except TimeoutError:
            raise BotError(
                f"bot on port {self.port} not listening after {timeout:g} s; stderr:\n{self.stderr_tail()}"
            ) from None
        if event["event"] == "process_exit":
            raise BotError(f"bot on port {self.port} exited at start; stderr:\n{self.stderr_tail()}")
        startup = self.listening_event()["t"] - self.started_at
        self.startup_times.append(startup)
        return startup

    def listening_event(self, gen: int | None = None) -> Event:
        """The `listening` event of start number `gen` (default: the current one)."""
        gen = gen or self.generation
        for event in self.events():
            if event.get("event") == "listening" and event["gen"] == gen:
                return event
        raise BotError(f"bot start {gen} has not reported listening")

    def kill(self) -> None:
        """SIGKILL: the bot vanishes without closing anything, as on a crash or power loss."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self._join_reader()

    def restart(self, timeout: float = 20.0) -> float:
        """Kill (if running) and start again on the same port; returns the startup time."""
        self.kill()
        self.start()
        return self.wait_listening(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it takes longer than `timeout`."""
        if self._proc is None:
            return
        terminate(self._proc, timeout)
        self._join_reader()

    def __enter__(self) -> BotProcess:
        self.start()
        self.wait_listening()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5.0)
            self._reader = None

    # --- events -------------------------------------------------------------------------------------

    def _read_events(self, proc: subprocess.Popen[bytes], gen: int) -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for raw in proc.stdout:
                received = time.monotonic()
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    event = None
                if not isinstance(event, dict):
                    event = {"event": "raw", "line": line}
                event["gen"] = gen
                event["received"] = received
                with self._cond:
                    self._events.append(event)
                    self._cond.notify_all()
        with self._cond:
            self._events.append({"event": "process_exit", "gen": gen, "received": time.monotonic()})
            self._cond.notify_all()

    def events(self, name: str | None = None, *, gen: int | None = None) -> list[Event]:
        """The events read so far, optionally only those called `name` and/or from start `gen`."""
        with self._cond:
            events = list(self._events)
        return [
            e
            for e in events
            if (name is None or e.get("event") == name) and (gen is None or e.get("gen") == gen)
        ]

    def mark(self) -> int:
        """An index into the event list; pass it as `since` to wait only for later events."""
        with self._cond:
            return len(self._events)

    def wait_for(self, predicate: Predicate, timeout: float, *, since: int = 0) -> Event:
        """Block until an event at index >= `since` satisfies `predicate`; TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        index = since
        with self._cond:
            while True:
                while index < len(self._events):
                    event = self._events[index]
                    index += 1
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching bot event within {timeout:g} s")
                self._cond.wait(remaining)

    async def wait_for_async(self, predicate: Predicate, timeout: float, *, since: int = 0) -> Event:
        """`wait_for` for trio callers: runs the blocking wait in a worker thread."""
        import trio

        return await trio.to_thread.run_sync(
            functools.partial(self.wait_for, predicate, timeout, since=since), abandon_on_cancel=True
        )

    def audio_in_total(self, gen: int | None = None) -> int:
        """Mic bytes the bot reported receiving (sum of its `audio_in` events)."""
        return sum(e.get("bytes", 0) for e in self.events("audio_in", gen=gen))

    def stderr_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        return "<no stderr>"
