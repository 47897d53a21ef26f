"""The event and control socket itself: real unix sockets and a real trio server, the daemon's command handler
replaced by a small recording one (the whole daemon behind it is tested in test_events_bot.py).

Covers many subscribers, filters, bad requests (an error reply, nothing changed, the connection kept),
the slow-subscriber drop, the client limit, socket permissions against another unprivileged user, and the
`voiceterm events` / `voiceterm ctl` commands.
"""

from __future__ import annotations

import functools
import grp
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from voiceterm.core import control_commands as cc
from voiceterm.core import device_events as de
from voiceterm.io.event_socket import EventHub, EventsSocketError, serve_events

DEADLINE = 10
NOBODY = 65534  # the unprivileged user (and nogroup) Debian always has
# The child runs as nobody, who cannot reach the test's own interpreter (a virtualenv under /root or
# /work); Debian's python3 is enough for a socket connect.
SYSTEM_PYTHON = "/usr/bin/python3"


class Recorder:
    """A command handler that records what it was asked and answers like the daemon would."""

    def __init__(self) -> None:
        self.commands: list[cc.Command] = []
        self.muted = False

    def __call__(self, command: cc.Command) -> dict[str, Any]:
        self.commands.append(command)
        if isinstance(command, cc.Status):
            return {"status": "ready", "muted": self.muted}
        if isinstance(command, cc.Mute):
            self.muted = not self.muted if command.muted is None else command.muted
            return {"muted": self.muted}
        if isinstance(command, cc.SendText):
            raise cc.CommandError("not connected to the bot")
        return {}


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path, whose parents are 0700: another user must be able to reach the socket.
    d = Path(tempfile.mkdtemp(prefix="vt-events-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


@asynccontextmanager
async def serving(path: Path, hub: EventHub, handler: Recorder, **kw: Any) -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        served = await nursery.start(functools.partial(serve_events, str(path), hub, handler, **kw))
        try:
            yield served
        finally:
            nursery.cancel_scope.cancel()


class Conn:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def send(self, raw: bytes) -> None:
        await self.stream.send_all(raw)

    async def line(self) -> dict[str, Any] | None:
        while b"\n" not in self.buffer:
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    async def request(self, **obj: Any) -> dict[str, Any]:
        await self.send(json.dumps(obj).encode() + b"\n")
        while True:
            msg = await self.line()
            assert msg is not None, "connection closed"
            if "reply" in msg:
                return msg


async def connect(path: str) -> Conn:
    return Conn(await trio.open_unix_socket(path))


async def test_many_subscribers_each_get_every_event_they_asked_for(sock_dir: Path) -> None:
    hub, handler = EventHub(), Recorder()
    with trio.fail_after(DEADLINE):
        async with serving(sock_dir / "events.sock", hub, handler) as path:
            everything = [await connect(path) for _ in range(3)]
            for c in everything:
                reply = await c.request(cmd="subscribe", id=7)
                assert reply == {
                    "reply": "subscribe",
                    "id": 7,
                    "ok": True,
                    "result": {"status": "ready", "muted": False},
                }
            only_mute = await connect(path)
            await only_mute.request(cmd="subscribe", events=["mute-changed"])
            commander = await connect(path)  # never subscribes: gets replies only
            assert hub.subscribers == 4

            hub.publish(de.Led("listening", "ready", "on", (0.0, 0.3, 1.0), "listening"))
            hub.publish(de.MuteChanged(True))
            hub.publish(de.OnUserTranscript("hello there"))
            assert (await commander.request(cmd="status"))["result"]["status"] == "ready"

            for c in everything:
                got = [await c.line() for _ in range(3)]
                assert [g["event"] for g in got] == ["led", "mute-changed", "user-transcript"]
                assert [g["seq"] for g in got] == [1, 2, 3]
                assert got[2]["text"] == "hello there" and got[2]["final"] is True
            assert (await only_mute.line())["event"] == "mute-changed"
            # unsubscribing stops the stream and keeps the connection for commands
            await everything[0].request(cmd="unsubscribe")
            hub.publish(de.MuteChanged(False))
            assert (await everything[0].request(cmd="status"))["ok"]
            assert (await everything[1].line())["muted"] is False


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"hello\n", "not JSON"),
        (b"[1, 2]\n", "must be a JSON object"),
        (b'{"id": 1}\n', 'missing "cmd"'),
        (b'{"cmd": "launch"}\n', "unknown command 'launch'"),
        (b'{"cmd": "talk"}\n', 'state must be "start" or "stop"'),
        (b'{"cmd": "talk", "state": "go"}\n', 'state must be "start" or "stop"'),
        (b'{"cmd": "mute", "really": true}\n', "unknown argument 'really'"),
        (b'{"cmd": "volume", "percent": 900}\n', "percent 900 is out of range, use 0 to 400"),
        (b'{"cmd": "volume", "percent": "loud"}\n', "percent must be a number"),
        (b'{"cmd": "send-text", "content": ""}\n', "content must be a non-empty string"),
        (b'{"cmd": "send-text", "content": "hi"}\n', "not connected to the bot"),
        (b'{"cmd": "subscribe", "events": ["nope"]}\n', "unknown event name 'nope'"),
        (b'{"cmd": "status", "id": {"x": 1}}\n', "id must be a string or an integer"),
    ],
)
async def test_a_bad_request_gets_an_error_reply_and_changes_nothing(
    sock_dir: Path, raw: bytes, error: str
) -> None:
    hub, handler = EventHub(), Recorder()
    with trio.fail_after(DEADLINE):
        async with serving(sock_dir / "events.sock", hub, handler) as path:
            c = await connect(path)
            await c.send(raw)
            reply = await c.line()
            assert reply is not None and reply["ok"] is False
            assert error in reply["error"] and "\n" not in reply["error"]
            # nothing was carried out (send-text was tried and refused by the handler), and the connection
            # still works
            assert all(isinstance(cmd, cc.SendText) for cmd in handler.commands)
            assert (await c.request(cmd="mute"))["result"] == {"muted": True}
            assert hub.counters["commands_failed_total"] == 1


async def test_an_overlong_request_is_refused_and_the_connection_closed(sock_dir: Path) -> None:
    hub, handler = EventHub(), Recorder()
    with trio.fail_after(DEADLINE):
        async with serving(sock_dir / "events.sock", hub, handler) as path:
            c = await connect(path)
            await c.send(b'{"cmd": "send-text", "content": "' + b"a" * (cc.MAX_REQUEST_BYTES + 10))
            reply = await c.line()
            assert reply is not None and "longer than" in reply["error"]
            assert await c.line() is None
            assert handler.commands == []


async def test_a_subscriber_that_stops_reading_is_dropped_and_the_others_are_not(sock_dir: Path) -> None:
    hub, handler = EventHub(queue_size=16), Recorder()
    with trio.fail_after(DEADLINE):
        async with serving(sock_dir / "events.sock", hub, handler) as path:
            stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stuck.connect(path)
            stuck.sendall(b'{"cmd": "subscribe"}\n')
            reader = await connect(path)
            await reader.request(cmd="subscribe")
            await trio.testing.wait_all_tasks_blocked()
            assert hub.subscribers == 2
            received = 0
            published = 0
            while hub.counters["subscribers_dropped_total"] == 0:
                assert published < 100_000, "the stuck subscriber was never dropped"
                hub.publish(de.VolumeChanged(published % 400))  # publish() itself never waits
                published += 1
                if published % 8 == 0:  # the healthy one keeps up
                    while received < published:
                        assert (await reader.line())["event"] == "volume-changed"
                        received += 1
            while received < published:
                assert (await reader.line())["event"] == "volume-changed"
                received += 1
            assert hub.subscribers == 1
            stuck.settimeout(5)
            data = b""
            while chunk := stuck.recv(65536):
                data += chunk
            stuck.close()
            lines = data.count(b"\n")
            print(f"\nstuck subscriber dropped after {published} events, {lines} lines were in its socket")
            assert lines < published


async def test_a_subscriber_cannot_hold_more_than_a_bounded_number_of_bytes(sock_dir: Path) -> None:
    """256 lines of 64 KiB (a bot's biggest) would be 16 MiB per stuck subscriber: the byte bound drops it
    first, long before its line queue is full."""
    from voiceterm.io.event_socket import MAX_QUEUED_BYTES

    hub, handler = EventHub(queue_size=256), Recorder()
    with trio.fail_after(DEADLINE):
        async with serving(sock_dir / "events.sock", hub, handler) as path:
            stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stuck.connect(path)
            stuck.sendall(b'{"cmd": "subscribe"}\n')
            while hub.subscribers < 1:
                await trio.testing.wait_all_tasks_blocked()
            big = de.OnServerMessage({"blob": "x" * (de.MAX_LINE_BYTES - 1000)})
            published = 0
            while hub.counters["subscribers_dropped_total"] == 0:
                hub.publish(big)
                published += 1
                assert published < 256, "dropped by the line count, not the byte bound"
            assert published <= MAX_QUEUED_BYTES // (de.MAX_LINE_BYTES - 1000) + 8  # + what the kernel took
            stuck.close()


async def test_clients_beyond_the_limit_are_told_and_closed(sock_dir: Path) -> None:
    hub, handler = EventHub(max_clients=2), Recorder()
    with trio.fail_after(DEADLINE):
        async with serving(sock_dir / "events.sock", hub, handler) as path:
            kept = [await connect(path) for _ in range(2)]
            for c in kept:
                await c.request(cmd="status")
            extra = await connect(path)
            reply = await extra.line()
            assert reply is not None and "too many clients (2)" in reply["error"]
            assert await extra.line() is None
            assert hub.counters["clients_refused_total"] == 1


def _connect_as(user: int, group: int, path: str) -> subprocess.CompletedProcess[str]:
    """Connect to `path` from a child process running as another user, with no supplementary groups."""
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect({path!r})\n"
        "except PermissionError:\n"
        "    print('denied'); sys.exit(0)\n"
        's.sendall(b\'{"cmd": "status"}\\n\')\n'
        "print(s.makefile().readline().strip())\n"
    )
    return subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", code],
        user=user,
        group=group,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as another user")
@pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason="needs Debian's python3")
async def test_socket_permissions_follow_the_group_setting(sock_dir: Path) -> None:
    nogroup = grp.getgrgid(NOBODY).gr_name
    path = sock_dir / "events.sock"
    with trio.fail_after(DEADLINE):
        # The configured group may connect ...
        async with serving(path, EventHub(), Recorder(), group=nogroup):
            st = os.stat(path)
            assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == NOBODY
            member = await trio.to_thread.run_sync(_connect_as, NOBODY, NOBODY, str(path))
            assert json.loads(member.stdout)["ok"] is True
        # ... a user outside the group may not ...
        async with serving(path, EventHub(), Recorder(), group="root"):
            assert os.stat(path).st_gid == 0
            outsider = await trio.to_thread.run_sync(_connect_as, NOBODY, NOBODY, str(path))
            assert outsider.stdout.strip() == "denied"
        # ... and without group access, not even the group.
        async with serving(path, EventHub(), Recorder(), group=nogroup, group_access=False):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            member = await trio.to_thread.run_sync(_connect_as, NOBODY, NOBODY, str(path))
            assert member.stdout.strip() == "denied"
        assert not path.exists()  # removed when the server stopped


async def test_an_unknown_group_is_one_clear_error(sock_dir: Path) -> None:
    with pytest.raises(EventsSocketError) as info:
        await serve_events(str(sock_dir / "events.sock"), EventHub(), Recorder(), group="no-such-group")
    assert (
        str(info.value)
        == "events.group: no group named 'no-such-group' on this system; create it or fix the setting"
    )


async def _cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "voiceterm", *args], capture_stdout=True, capture_stderr=True, check=False
    )


async def test_voiceterm_ctl_sends_one_command_and_prints_the_result(sock_dir: Path) -> None:
    hub, handler = EventHub(), Recorder()
    with trio.fail_after(30):
        async with serving(sock_dir / "events.sock", hub, handler) as path:
            done = await _cli("ctl", "--socket", path, "mute")
            assert done.returncode == 0 and done.stdout.decode() == "muted: True\n"
            done = await _cli("ctl", "--socket", path, "--json", "unmute")
            assert json.loads(done.stdout)["result"] == {"muted": False}
            done = await _cli("ctl", "--socket", path, "send-text", "what", "time", "is", "it")
            assert done.returncode == 1
            assert done.stderr.decode() == "voiceterm: send-text: not connected to the bot\n"
            assert handler.commands[-1] == cc.SendText("what time is it")
            done = await _cli("ctl", "--socket", path, "talk", "sideways")
            assert done.returncode == 2 and b"usage: voiceterm ctl talk start|stop" in done.stderr
        done = await _cli("ctl", "--socket", str(sock_dir / "gone.sock"), "status")
        assert done.returncode == 69
        assert done.stderr.decode().startswith("voiceterm: no daemon answers on ")
        assert done.stderr.decode().count("\n") == 1


def test_the_readable_view_tells_the_conversation_once() -> None:
    from voiceterm.events_cli import ConversationView

    view = ConversationView()
    lines = [
        {"event": "transport-state-changed", "state": "backing-off", "error": "connection refused", "ts": 0},
        {"event": "user-transcript", "text": "hel", "final": False, "ts": 0},
        {"event": "user-transcript", "text": "hello", "final": True, "ts": 0},
        {"event": "user-input", "text": "hello", "ts": 0},
        {"event": "bot-output", "text": "Hi there.", "segment_id": 4, "spoken_status": "new", "ts": 0},
        {"event": "bot-output", "text": "Hi there.", "segment_id": 4, "spoken_status": "completed", "ts": 0},
        {"event": "bot-tts-text", "text": "Hi there.", "ts": 0},
        {"event": "bot-transcript", "text": "Hi there.", "ts": 0},
        {"event": "mute-changed", "muted": True, "ts": 0},
        {"event": "audio-fault", "device": "capture", "fault": "device gone", "ts": 0},
        {"event": "audio-fault", "device": "capture", "fault": None, "ts": 0},
        {"event": "drops", "counters": {"link.dropped_outgoing_audio_total": 3, "x_total": 0}, "ts": 0},
    ]
    said = [text.split("  ", 1)[1] for line in lines if (text := view.line(line)) is not None]
    assert said == [
        "link: backing-off (connection refused)",
        "you: hello",
        "bot: Hi there.",
        "muted",
        "capture fault: device gone",
        "capture recovered",
        "drops: dropped_outgoing_audio_total=3",
    ]


async def test_a_group_that_cannot_reach_the_directory_is_warned_about(sock_dir: Path, caplog) -> None:
    from voiceterm.io.event_socket import group_can_reach

    nogroup = grp.getgrgid(NOBODY).gr_name
    inner = sock_dir / "run"
    inner.mkdir(mode=0o750)  # like the unit's RuntimeDirectoryMode=0750, group root here
    inner.chmod(0o750)
    assert not group_can_reach(os.stat(inner), NOBODY) and group_can_reach(os.stat(inner), 0)
    with trio.fail_after(DEADLINE):
        async with serving(inner / "events.sock", EventHub(), Recorder(), group=nogroup):
            pass
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"events.group {nogroup} cannot reach the socket: {inner} is mode 750; add RuntimeDirectoryMode=0751 "
        "(systemctl edit voiceterm), or add the group's users to the daemon's group instead"
    ]
    inner.rmdir()


async def test_drops_in_a_row_are_one_log_line(sock_dir: Path, caplog) -> None:
    hub = EventHub(queue_size=16)
    with trio.fail_after(DEADLINE):
        async with serving(sock_dir / "events.sock", hub, Recorder()) as path:
            stuck = []
            for _ in range(3):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.connect(path)
                s.sendall(b'{"cmd": "subscribe"}\n')
                stuck.append(s)
            await trio.testing.wait_all_tasks_blocked()
            assert hub.subscribers == 3
            published = 0
            while hub.counters["subscribers_dropped_total"] < 3:
                assert published < 100_000
                hub.publish(de.MuteChanged(published % 2 == 0))
                published += 1
                if published % 64 == 0:
                    await trio.testing.wait_all_tasks_blocked()  # let the writers fill the kernel buffers
            for s in stuck:
                s.close()
    drops = [r.getMessage() for r in caplog.records if "events client dropped" in r.getMessage()]
    assert len(drops) == 1 and "reason=" in drops[0] and "pid=" in drops[0]


def test_printed_lines_cannot_drive_the_terminal() -> None:
    """`voiceterm events` and `voiceterm status` print text that came from the bot: escape sequences, line
    breaks and bidirectional overrides are shown as escapes, on one line."""
    from voiceterm.cli import format_status
    from voiceterm.events_cli import ConversationView

    evil = "hi\x1b[2J\x1b]0;pwned\x07\nforged line\u202e\x9b31m"
    shown = [
        ConversationView().line({"event": "bot-output", "text": evil, "ts": 0}),
        ConversationView().line({"event": "error", "message": evil, "ts": 0}),
        *format_status({"link": {"last_error": evil}}),
    ]
    for line in shown:
        assert line is not None and "\n" not in line
        assert not any(c in line for c in "\x1b\x07\u202e\x9b"), line
        assert "forged line" in line  # the text itself is still there to read
