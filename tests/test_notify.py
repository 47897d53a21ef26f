"""sd_notify: real AF_UNIX datagram sockets (a file path and an abstract name) receive exactly what systemd would."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from voiceterm.io.notify import STATUS_MAX_CHARS, Notifier, clean_status, watchdog_period


def _receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2.0)
    return sock


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = _receiver(path)
    yield path, sock
    sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"voiceterm-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    sock = _receiver("\0" + name)
    yield "@" + name, sock
    sock.close()


@pytest.mark.parametrize("which", ["path_socket", "abstract_socket"])
def test_messages_arrive_exactly(which: str, request: pytest.FixtureRequest) -> None:
    address, receiver = request.getfixturevalue(which)
    with Notifier(address) as notifier:
        assert notifier.enabled
        assert notifier.ready("ready | link up")
        assert receiver.recv(4096) == b"READY=1\nSTATUS=ready | link up"
        assert notifier.ready()
        assert receiver.recv(4096) == b"READY=1"
        assert notifier.status("offline\nretrying in 2 s")
        assert receiver.recv(4096) == b"STATUS=offline retrying in 2 s"
        assert notifier.watchdog()
        assert receiver.recv(4096) == b"WATCHDOG=1"
        assert notifier.stopping()
        assert receiver.recv(4096) == b"STOPPING=1"
        assert notifier.notify("EXTEND_TIMEOUT_USEC=5000000", "STATUS=slow start")
        assert receiver.recv(4096) == b"EXTEND_TIMEOUT_USEC=5000000\nSTATUS=slow start"
        assert notifier.sent_total == 6
        assert notifier.failed_total == 0


def test_reloading_carries_the_monotonic_clock(path_socket: tuple[str, socket.socket]) -> None:
    address, receiver = path_socket
    notifier = Notifier(address)
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = receiver.recv(4096).decode().split("\n")
    assert lines[0] == "RELOADING=1"
    key, value = lines[1].split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after
    notifier.close()


def test_notify_socket_from_the_environment(
    abstract_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, receiver = abstract_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    notifier = Notifier()
    assert notifier.enabled
    assert notifier.watchdog()
    assert receiver.recv(4096) == b"WATCHDOG=1"
    notifier.close()


def test_without_systemd_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False
    assert notifier.reloading() is False
    assert notifier.sent_total == 0
    assert notifier.failed_total == 0  # nothing was attempted
    notifier.close()


def test_an_invalid_notify_socket_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="voiceterm.notify"):
        notifier = Notifier("relative/notify.sock")
    assert not notifier.enabled
    assert notifier.ready() is False
    assert "NOTIFY_SOCKET ignored" in caplog.text


def test_a_send_failure_never_raises_and_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(tmp_path / "gone.sock"))  # systemd's socket vanished
    with caplog.at_level(logging.DEBUG, logger="voiceterm.notify"):
        assert notifier.watchdog() is False
        assert notifier.watchdog() is False
        assert notifier.status("still here") is False
    levels = [r.levelno for r in caplog.records if "sd_notify send failed" in r.getMessage()]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert notifier.failed_total == 3


def test_a_full_systemd_queue_does_not_stall_the_caller(path_socket: tuple[str, socket.socket]) -> None:
    address, _receiver_that_never_reads = path_socket
    notifier = Notifier(address)
    worst = 0.0
    for _ in range(10_000):
        start = time.monotonic()
        ok = notifier.watchdog()
        worst = max(worst, time.monotonic() - start)
        if not ok:
            break
    else:
        pytest.fail("the receiver queue never filled up")
    assert notifier.failed_total == 1
    assert worst < 1.0  # bounded by SEND_TIMEOUT_S (0.2 s), not blocked until systemd reads


def test_close_then_send_again_reopens(path_socket: tuple[str, socket.socket]) -> None:
    address, receiver = path_socket
    notifier = Notifier(address)
    assert notifier.watchdog()
    notifier.close()
    notifier.close()  # twice is harmless
    assert notifier.watchdog()
    assert receiver.recv(4096) == b"WATCHDOG=1"
    assert receiver.recv(4096) == b"WATCHDOG=1"
    notifier.close()


def test_clean_status_is_one_capped_line() -> None:
    assert clean_status("  ready\r\n  link up\tok ") == "ready link up ok"
    long = clean_status("x" * 1000)
    assert len(long) == STATUS_MAX_CHARS
    assert long.endswith("…")
    exact = "y" * STATUS_MAX_CHARS
    assert clean_status(exact) == exact


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "1000000"}, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "{pid}"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "me"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "30s"}, None),
        ({"WATCHDOG_USEC": ""}, None),
    ],
)
def test_watchdog_period(environ: dict[str, str], expected: float | None) -> None:
    env = {k: v.format(pid=os.getpid()) for k, v in environ.items()}
    assert watchdog_period(env) == expected


def test_watchdog_period_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_period() == 10.0
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_period() is None


def test_clean_status_escapes_what_a_bot_put_in_an_error() -> None:
    line = clean_status("offline: bot closed (code 4000: a\x1b[2Jb\u2028c Bearer s3cr3t-value)")
    assert "\x1b" not in line and "\u2028" not in line and "s3cr3t-value" not in line
    assert "a\\x1b[2Jb c" in line  # U+2028 is whitespace: collapsed like a newline
