"""The hostile-input suite's shared parts: one real `voiceterm run` (file ALSA, mock GPIO) per module behind
a malicious relay (voiceterm_devkit.hostile_bot) in front of the real Pipecat echo bot, an event subscriber
that checks every line it receives, and `Hostile.check_healthy`, which every case ends with:

- the daemon is still running and no exception escaped (no Traceback, no "daemon failed");
- every line it wrote is a log record of its own (a forged line fed to it would start without the record
  prefix), and none of the lines the case fed it appears as a line;
- the subscriber is still attached and every line it got was strict UTF-8 JSON, one object per line;
- it streams mic audio to the real bot afterwards (a push-to-talk turn the bot hears);
- its RSS is within RSS_SLACK_KIB of the level measured once it was warm.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from voiceterm.events_cli import EventClient
from voiceterm.io.control import connect_unix
from voiceterm_devkit.alsa_files import AlsaFileConfig, noise, write_raw
from voiceterm_devkit.bot import BotProcess
from voiceterm_devkit.daemonproc import DaemonProcess, merge_sections
from voiceterm_devkit.hostile_bot import HostileBot

MIC_RATE = 16000
MIC_BYTES = MIC_RATE // 2  # 0.25 s of 16-bit mono mic audio
RSS_SLACK_KIB = 6 * 1024  # "within a few MiB of its steady level"
# Every line the daemon writes to stderr (no journal: timestamps) starts like this.
RECORD = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.-]+: ")


def _strict_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class EventTap:
    """A subscriber on the daemon's event socket that checks every line as a strict JSON client would:
    UTF-8, one object per line, no NaN. Lines that fail are kept in `errors`."""

    def __init__(self, path: str) -> None:
        self._sock = connect_unix(path, 5.0)
        self._sock.settimeout(None)
        self._sock.sendall(b'{"cmd":"subscribe","id":"tap"}\n')
        self.events: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.lines = 0
        self.closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="event-tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buffer = b""
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                with self._cond:
                    self.closed = True
                    self._cond.notify_all()
                return
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            with self._cond:
                for line in lines:
                    self.lines += 1
                    try:
                        obj = json.loads(line.decode("utf-8"), parse_constant=_strict_constant)
                        if not isinstance(obj, dict):
                            raise ValueError("not an object")
                    except ValueError as e:
                        self.errors.append(f"{e}: {line[:120]!r}")
                        continue
                    self.events.append(obj)
                self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float, since: int = 0) -> dict:
        with self._cond:
            deadline = time.monotonic() + timeout
            while True:
                for event in self.events[since:]:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError(f"no matching event within {timeout:g} s (closed={self.closed})")
                self._cond.wait(left)

    def since(self, mark: int) -> list[dict[str, Any]]:
        with self._cond:
            return list(self.events[mark:])

    def close(self) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(5)


class Hostile:
    """The shared daemon, relay, bot and subscriber of one module."""

    def __init__(self, daemon: DaemonProcess, relay: HostileBot, bot: BotProcess, tap: EventTap) -> None:
        self.daemon = daemon
        self.relay = relay
        self.bot = bot
        self.tap = tap
        self.baseline_kib = 0
        self.peak_kib = 0  # VmHWM: the daemon's resident peak, for the unit's MemoryMax= (see the unit)
        self.peak_threads = 0  # for TasksMax=
        self.fed: list[str] = []  # lines the cases fed the daemon: none may show up as a line of its own

    # --- helpers for the cases -------------------------------------------------------------------

    def ctl(self, cmd: str, **args: Any) -> dict[str, Any]:
        with EventClient(self.daemon.events_path, timeout=5.0) as client:
            return client.request(cmd, timeout=5.0, **args)

    def ctl_raw(self, line: bytes) -> bytes:
        """One raw request line on a fresh connection; the daemon's raw answer line."""
        sock = connect_unix(self.daemon.events_path, 5.0)
        try:
            sock.sendall(line)
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
            return answer
        finally:
            sock.close()

    def wait_ready(self, timeout: float = 15.0) -> dict[str, Any]:
        return self.daemon.wait_status(lambda s: s["link"]["state"] == "ready", timeout, "link ready")

    def session(self) -> int:
        return self.relay.sessions

    def log_mark(self) -> int:
        return len(self.daemon.log_lines)

    def log_since(self, mark: int) -> list[str]:
        return [line for _, line in self.daemon.log_lines[mark:]]

    def rss_kib(self) -> int:
        return self.daemon.memory_kib()["VmRSS"]

    # --- the verdict -------------------------------------------------------------------------------

    def stream_mic(self, timeout: float = 15.0) -> None:
        """One push-to-talk turn from the control socket; the real bot must hear 0.25 s of it."""
        # From quiet: a turn started while the echo of the last one still plays would be a barge-in, and
        # the bot audio of the next case would be held back as stale for a moment.
        self.daemon.wait_status(
            lambda s: s["link"]["state"] == "ready" and s["status"] == "ready", timeout, "ready and quiet"
        )
        relayed, heard = self.relay.mic_bytes, self.bot.audio_in_total()
        reply = self.ctl("talk", state="start")
        assert reply["ok"], reply
        try:
            deadline = time.monotonic() + timeout
            while self.relay.mic_bytes - relayed < MIC_BYTES or self.bot.audio_in_total() - heard < MIC_BYTES:
                assert time.monotonic() < deadline, "mic audio did not reach the bot"
                assert self.daemon.alive(), "the daemon exited"
                time.sleep(0.05)
        finally:
            self.ctl("talk", state="stop")

    def check_healthy(self) -> None:
        assert self.daemon.alive(), f"the daemon exited:\n{self.daemon.log_tail()}"
        self.stream_mic()
        assert self.daemon.escaped_exceptions() == []
        lines = [line for _, line in self.daemon.log_lines]
        forged = [line for line in lines if not RECORD.match(line)]
        assert forged == [], "lines that are not the daemon's own records"
        for fed in self.fed:
            assert fed not in lines
        assert self.tap.errors == [], "the subscriber got lines that are not strict JSON"
        assert not self.tap.closed, "the subscriber was dropped"
        rss = self.rss_kib()
        print(f"\nRSS {rss - self.baseline_kib:+} KiB against the steady {self.baseline_kib} KiB")
        self.peak_kib = max(self.peak_kib, self.daemon.memory_kib()["VmHWM"])
        self.peak_threads = max(self.peak_threads, threads(self.daemon.pid))
        assert rss <= self.baseline_kib + RSS_SLACK_KIB, f"RSS {rss} KiB, steady {self.baseline_kib} KiB"


def make_daemon(workdir: Path, url: str, config: dict | None = None) -> DaemonProcess:
    """`voiceterm run` on file PCMs (a 10-minute mic file), for the bot at `url`; not started yet."""
    alsa = AlsaFileConfig(workdir / "alsa")
    mic = workdir / "mic.raw"
    write_raw(mic, noise(MIC_RATE * 600, seed=3, amplitude=6000))  # longer than the module runs
    alsa.add_capture("mic", mic).add_playback("spk", workdir / "spk.raw")
    sections = merge_sections(
        {
            "bot": {"url": url, "ready_timeout": 2.0, "connect_timeout": 5.0},
            "push_to_talk": {"tail_ms": 0},
            "reconnect": {"initial_delay": 0.2, "max_delay": 1.0},
            "heartbeat": {"interval": 2.0, "timeout": 2.0},
        },
        config,
    )
    return DaemonProcess(workdir / "daemon", bot_url=url, alsa=alsa, config=sections)


UNIT = Path(__file__).resolve().parents[2] / "systemd" / "voiceterm.service"


def unit_ceilings() -> tuple[int, int]:
    """MemoryMax= (bytes) and TasksMax= of the shipped unit."""
    settings = dict(
        line.split("=", 1)
        for line in UNIT.read_text().splitlines()
        if line.startswith(("MemoryMax=", "TasksMax="))
    )
    memory, scale = settings["MemoryMax"], {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    size = int(memory[:-1]) * scale[memory[-1]] if memory[-1] in scale else int(memory)
    return size, int(settings["TasksMax"])


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def start_hostile(
    workdir: Path,
    bot: BotProcess,
    config: dict | None = None,
    *,
    relay: HostileBot | None = None,
    ready_timeout: float = 15.0,
) -> Iterator[Hostile]:
    """A Hostile environment: `relay` (started, or a new one in front of `bot`), the daemon with `config`
    merged over the suite's settings, warmed up, RSS baseline taken."""
    relay = relay or HostileBot(upstream=bot.url).start()
    daemon = make_daemon(workdir, relay.url, config)
    daemon.start()
    tap = None
    try:
        daemon.wait_ready()
        tap = EventTap(daemon.events_path)
        env = Hostile(daemon, relay, bot, tap)
        env.wait_ready(ready_timeout)
        env.stream_mic()  # warm: a session, a turn, the speaker and the event stream all used once
        env.baseline_kib = env.rss_kib()
        yield env
        print(
            f"\nhostile daemon resources: RSS steady {env.baseline_kib} KiB, now {env.rss_kib()} KiB, "
            f"peak {env.peak_kib} KiB; threads peak {env.peak_threads}"
        )
        # The unit's ceilings were sized from these figures: they must keep at least a 2x margin.
        memory_max, tasks_max = unit_ceilings()
        assert env.peak_kib * 1024 * 2 <= memory_max and env.peak_threads * 2 <= tasks_max
    finally:
        if tap is not None:
            tap.close()
        status = daemon.stop()
        relay.stop()
        assert status == 0, f"exit status {status} on SIGTERM:\n{daemon.log_tail()}"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, echo_bot: BotProcess) -> Iterator[Hostile]:
    if not echo_bot.running:
        echo_bot.restart()
    yield from start_hostile(tmp_path_factory.mktemp("hostile"), echo_bot)
