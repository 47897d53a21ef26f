"""The status socket (real unix stream sockets, a real trio server) and the atomic textfile writer."""

from __future__ import annotations

import errno
import json
import math
import os
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trio

from voiceterm.core.linkstate import LinkState
from voiceterm.io import control
from voiceterm.io.control import (
    StatusUnavailable,
    default_socket_path,
    encode_snapshot,
    read_status,
    serve_status,
    write_textfile,
)

DEADLINE = 10  # seconds for any one I/O test


def _snapshot(n: int = 0) -> dict[str, Any]:
    # The shape the app builds (see voiceterm.app.Daemon.snapshot).
    return {
        "version": "0.1.0",
        "link": {
            "state": "ready",
            "attempts": 0,
            "last_error": None,
            "connects_total": 3 + n,
            "uptime_s": 12.5,
        },
        "audio": {
            "capture_fault": None,
            "playback_fault": "device unplugged",
            "overruns_total": 2,
            "underruns_total": 0,
            "playout_dropped_frames_total": 0,
            "mic_level_dbfs": -42.5,
        },
        "panel": {"muted": False, "status": "ready"},
    }


async def _read(path: str, timeout: float = 2.0) -> dict[str, Any]:
    return await trio.to_thread.run_sync(read_status, path, timeout)


async def test_each_connection_gets_the_current_snapshot(tmp_path: Path) -> None:
    path = str(tmp_path / "status.sock")
    calls = 0

    def snapshot() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return _snapshot(calls)

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            started = await nursery.start(serve_status, path, snapshot)
            assert started == path
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
            first = await _read(path)
            second = await _read(path)
            assert first == _snapshot(1)
            assert second["link"]["connects_total"] == _snapshot(2)["link"]["connects_total"]
            nursery.cancel_scope.cancel()
    assert not os.path.exists(path)  # cleaned up on the way out


async def test_many_clients_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "status.sock")
    results: list[dict[str, Any]] = []

    async def client() -> None:
        results.append(await _read(path))

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_status, path, _snapshot)
            async with trio.open_nursery() as clients:
                for _ in range(3 * control.MAX_CLIENTS):
                    clients.start_soon(client)
            nursery.cancel_scope.cancel()
    assert results == [_snapshot()] * (3 * control.MAX_CLIENTS)


async def test_the_answer_is_strict_json(tmp_path: Path) -> None:
    path = str(tmp_path / "status.sock")

    def snapshot() -> dict[str, Any]:
        return {"level": math.nan, "peak": -math.inf, "state": LinkState.BACKING_OFF, "pins": (17, 27)}

    def refuse(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_status, path, snapshot)
            raw = await trio.to_thread.run_sync(_raw_answer, path)
            nursery.cancel_scope.cancel()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1  # one line, for `socat` and shell scripts
    doc = json.loads(raw, parse_constant=refuse)
    assert doc == {"level": None, "peak": None, "state": "backing-off", "pins": [17, 27]}


def _raw_answer(path: str) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(path)
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
        return b"".join(chunks)


async def test_a_failing_snapshot_is_reported_and_the_server_lives_on(tmp_path: Path) -> None:
    path = str(tmp_path / "status.sock")
    fail = True

    def snapshot() -> dict[str, Any]:
        if fail:
            raise RuntimeError("mic stats exploded")
        return _snapshot()

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_status, path, snapshot)
            assert await _read(path) == {"error": "snapshot failed: RuntimeError"}
            fail = False
            assert await _read(path) == _snapshot()
            nursery.cancel_scope.cancel()


async def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "status.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)  # a daemon that died without cleaning up leaves exactly this
    dead.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_status, path, _snapshot)
            assert await _read(path) == _snapshot()
            nursery.cancel_scope.cancel()


async def test_a_live_server_is_not_taken_over(tmp_path: Path) -> None:
    path = str(tmp_path / "status.sock")
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_status, path, _snapshot)
            with pytest.raises(OSError, match="another voiceterm already answers") as info:
                await nursery.start(serve_status, path, lambda: {"imposter": True})
            assert info.value.errno == errno.EADDRINUSE
            assert await _read(path) == _snapshot()  # the first one still answers
            nursery.cancel_scope.cancel()
    assert not os.path.exists(path)


async def test_a_regular_file_in_the_way_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"
    path.write_text("precious")
    with trio.fail_after(DEADLINE), pytest.raises(FileExistsError, match="is not a socket"):
        await serve_status(str(path), _snapshot)
    assert path.read_text() == "precious"


async def test_missing_directories_are_created_private(tmp_path: Path) -> None:
    path = tmp_path / "xdg" / "voiceterm" / "status.sock"
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_status, str(path), _snapshot)
            assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
            nursery.cancel_scope.cancel()


async def test_a_directory_owned_by_someone_else_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = tmp_path / "voiceterm-1234"
    planted.mkdir()
    if os.getuid() == 0:
        os.chown(planted, 4321, 4321)  # as root: plant it as another user ourselves
    else:  # pragma: no cover - the suite runs as root in CI
        pytest.skip("needs root to create a directory owned by another user")
    monkeypatch.setattr(control.os, "getuid", lambda: 1234)
    with trio.fail_after(DEADLINE), pytest.raises(PermissionError, match="belongs to another user"):
        await serve_status(str(planted / "status.sock"), _snapshot)
    assert list(planted.iterdir()) == []


# --- the client's errors: one line each ----------------------------------------------------------


def test_nothing_there(tmp_path: Path) -> None:
    with pytest.raises(StatusUnavailable) as info:
        read_status(str(tmp_path / "status.sock"))
    assert isinstance(info.value, OSError)
    assert info.value.errno == errno.ENOENT
    assert str(info.value) == "no socket there (is the daemon running?)"


def test_a_stale_socket_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "status.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()
    with pytest.raises(StatusUnavailable, match="connection refused") as info:
        read_status(path)
    assert info.value.errno == errno.ECONNREFUSED
    assert "\n" not in str(info.value)


def test_a_silent_listener_times_out(tmp_path: Path) -> None:
    path = str(tmp_path / "status.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as wedged:
        wedged.bind(path)
        wedged.listen(1)  # the kernel completes the connect; nobody ever answers
        with pytest.raises(StatusUnavailable, match=r"no answer within 0\.2 s") as info:
            read_status(path, timeout=0.2)
    assert info.value.errno == errno.ETIMEDOUT


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]\n", "not a JSON object"),
        (b"{" + b" " * (control.MAX_DOCUMENT_BYTES + 1), "larger than"),
    ],
)
async def test_an_answer_that_is_not_a_status_document(tmp_path: Path, payload: bytes, message: str) -> None:
    path = str(tmp_path / "other.sock")
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await listener.bind(path)
    listener.listen(1)

    async def answer_once() -> None:
        conn, _ = await listener.accept()
        stream = trio.SocketStream(conn)
        try:
            await stream.send_all(payload)
        except trio.BrokenResourceError:
            pass  # the client stopped reading at its size limit
        finally:
            await stream.aclose()

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_once)
            with pytest.raises(ValueError, match=message):
                await _read(path)
    listener.close()


# --- where the socket lives ----------------------------------------------------------------------


def test_default_path_prefers_systemds_runtime_directory(tmp_path: Path) -> None:
    env = {"RUNTIME_DIRECTORY": "/run/voiceterm", "XDG_RUNTIME_DIR": str(tmp_path)}
    assert default_socket_path(env, run_dir=str(tmp_path / "nope")) == "/run/voiceterm/status.sock"
    env = {"RUNTIME_DIRECTORY": "/run/voiceterm:/run/other"}
    assert default_socket_path(env) == "/run/voiceterm/status.sock"


def test_default_path_uses_the_run_dir_when_the_socket_is_there_or_it_is_writable(tmp_path: Path) -> None:
    run_dir = tmp_path / "run" / "voiceterm"
    # Missing, but its parent is writable: the server will create it.
    (tmp_path / "run").mkdir()
    assert default_socket_path({}, run_dir=str(run_dir)) == str(run_dir / "status.sock")
    run_dir.mkdir()
    assert default_socket_path({}, run_dir=str(run_dir)) == str(run_dir / "status.sock")
    (run_dir / "status.sock").touch()  # the client's case: a daemon's socket is there
    assert default_socket_path({}, run_dir=str(run_dir)) == str(run_dir / "status.sock")


def test_default_path_falls_back_to_xdg_then_tmp(tmp_path: Path) -> None:
    unusable = str(tmp_path / "no" / "such" / "voiceterm")  # neither it nor its parent exists
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    env = {"XDG_RUNTIME_DIR": str(xdg)}
    assert default_socket_path(env, run_dir=unusable) == str(xdg / "voiceterm" / "status.sock")
    expected = os.path.join(tempfile.gettempdir(), f"voiceterm-{os.getuid()}", "status.sock")
    assert default_socket_path({}, run_dir=unusable) == expected
    assert default_socket_path({"XDG_RUNTIME_DIR": str(tmp_path / "gone")}, run_dir=unusable) == expected


def test_encode_snapshot_falls_back_to_str_for_odd_values() -> None:
    doc = json.loads(encode_snapshot({"path": Path("/run/x"), "n": 1, "nested": {"ok": True}}))
    assert doc == {"path": "/run/x", "n": 1, "nested": {"ok": True}}


# --- the Prometheus textfile ---------------------------------------------------------------------


def test_write_textfile_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "voiceterm.prom"
    write_textfile(str(target), "a 1\n")
    assert target.read_text() == "a 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # node_exporter runs as another user
    inode = target.stat().st_ino
    write_textfile(str(target), "a 2\n")
    assert target.read_text() == "a 2\n"
    assert target.stat().st_ino != inode  # a new file renamed over the old one, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voiceterm.prom"]


def test_write_textfile_failure_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "voiceterm.prom"
    write_textfile(str(target), "a 1\n")
    with pytest.raises(UnicodeEncodeError):
        write_textfile(str(target), "bad \ud800 surrogate\n")
    assert target.read_text() == "a 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voiceterm.prom"]


def test_write_textfile_into_a_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_textfile(str(tmp_path / "missing" / "voiceterm.prom"), "a 1\n")
    assert list(tmp_path.iterdir()) == []
