"""The event stream and control socket: a unix socket where kiosk screens and local tools subscribe to the
daemon's events and send it commands, one JSON object per line each way.

Publishing never waits. Each connection has its own bounded queue of outgoing lines (replies and events)
drained by its own writer task; a connection whose queue is full — a subscriber that stopped reading, or
one that lets more than MAX_QUEUED_BYTES pile up (a bot sending 64 KiB lines) — is dropped on the spot,
counted and logged once, so no subscriber can slow the audio or the link, nor hold much of its memory.
The socket is created with the configured mode and group (see `EventsConfig`) and removed when the server
stops.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import grp
import itertools
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

import trio

from voiceterm.core import control_commands as cc
from voiceterm.core.device_events import DeviceEvent, encode
from voiceterm.core.lograte import Throttle
from voiceterm.io.control import accept, listening_socket
from voiceterm.logs import kv

log = logging.getLogger("voiceterm.events")

SOCKET_NAME = "events.sock"
READ_CHUNK = 4096
DRAIN_AFTER_EOF_S = 2.0
DROP_LOG_INTERVAL_S = 60.0  # dropped clients beyond one per this are counted in the next line, not logged
# Kernel send buffer per connection (Linux doubles it): with the queue, it bounds what a stuck subscriber
# can hold of the daemon's memory, and it makes "stuck" visible within a few hundred events.
SEND_BUFFER_BYTES = 32 * 1024
# Bytes waiting in one connection's queue: 256 ordinary lines are ~50 KB, but 256 lines a bot made 64 KiB
# each would be 16 MiB per subscriber. Beyond this the connection is a stuck one, dropped like a full queue.
MAX_QUEUED_BYTES = 1 << 20

Handler = Callable[[cc.Command], Mapping[str, Any]]
"""Carries out a command (anything but subscribe / unsubscribe) and returns its result; raises
control_commands.CommandError with a one-line reason to refuse it."""


class EventsSocketError(OSError):
    """The socket cannot be set up as configured; str() is one line naming the setting and the fix."""

    def __str__(self) -> str:
        return self.strerror or ""


def resolve_group(name: str) -> int:
    """The gid a configured group name (or number) stands for; EventsSocketError when there is none."""
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise EventsSocketError(
            errno.EINVAL,
            f"events.group: no group named {name!r} on this system; create it or fix the setting",
        ) from None


# The connection whose request the handler is carrying out (its `client` number, never 0), for commands that
# act on their own connection: function claims and results, requests whose reply comes later.
current_client: contextvars.ContextVar[int] = contextvars.ContextVar("voiceterm_events_client", default=0)
_client_numbers = itertools.count(1)


class _Connection:
    __slots__ = ("cancel_scope", "client", "filter", "label", "queued_bytes", "send", "subscribed")

    def __init__(self, send: trio.MemorySendChannel[bytes], label: str) -> None:
        self.client = next(_client_numbers)
        self.send = send
        self.label = label
        self.queued_bytes = 0  # in the queue, not yet handed to the socket
        self.subscribed = False
        self.filter: frozenset[str] | None = None
        self.cancel_scope = trio.CancelScope()

    def wants(self, name: str) -> bool:
        return self.subscribed and (self.filter is None or name in self.filter)


class EventHub:
    """Fans events out to the socket's subscribers without ever blocking the publisher."""

    def __init__(self, queue_size: int = 256, max_clients: int = 16) -> None:
        self.queue_size = queue_size
        self.max_clients = max_clients
        self._connections: set[_Connection] = set()
        self._seq = 0
        self._drop_log = Throttle(DROP_LOG_INTERVAL_S)
        # Called with the client number of each connection that ends (its claims and requests die with it).
        self.on_disconnect: list[Callable[[int], None]] = []
        self._error_log = Throttle(DROP_LOG_INTERVAL_S)
        self.counters = {
            "events_published_total": 0,
            "clients_total": 0,
            "clients_refused_total": 0,
            "subscribers_dropped_total": 0,
            "commands_total": 0,
            "commands_failed_total": 0,
        }

    @property
    def full(self) -> bool:
        return len(self._connections) >= self.max_clients

    @property
    def subscribers(self) -> int:
        return sum(1 for c in self._connections if c.subscribed)

    def snapshot(self) -> dict[str, Any]:
        return {"clients": len(self._connections), "subscribers": self.subscribers, **self.counters}

    def publish(self, event: DeviceEvent) -> None:
        """Queue `event` for every subscriber that wants it; never waits. Encoded once, only when wanted."""
        self._seq += 1
        self.counters["events_published_total"] += 1
        line: bytes | None = None
        for conn in list(self._connections):
            if not conn.wants(event.NAME):
                continue
            if line is None:
                line = encode(event, ts=time.time(), seq=self._seq)
            self._offer(conn, line)

    def send_to(self, client: int, event: DeviceEvent) -> bool:
        """Queue `event` for one connection whether it subscribed or not (the answer to its own request);
        False when that connection is gone. Never waits."""
        self._seq += 1
        for conn in self._connections:
            if conn.client == client:
                self._offer(conn, encode(event, ts=time.time(), seq=self._seq))
                return True
        return False

    def _offer(self, conn: _Connection, line: bytes) -> None:
        if conn.queued_bytes + len(line) > MAX_QUEUED_BYTES:
            self._drop(conn, f"over {MAX_QUEUED_BYTES} bytes queued: it does not keep up")
            return
        try:
            conn.send.send_nowait(line)
        except trio.WouldBlock:
            self._drop(conn, f"queue full ({self.queue_size} lines): it stopped reading")
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # already going away
        conn.queued_bytes += len(line)

    def _drop(self, conn: _Connection, why: str) -> None:
        if conn not in self._connections:
            return
        self._connections.discard(conn)
        if conn.subscribed:
            self.counters["subscribers_dropped_total"] += 1
        # One line per drop, but a screen app that reconnects and stalls in a loop must not flood the journal.
        held = self._drop_log.allow(time.monotonic())
        if held is not None:
            more = f" (+{held} more since the last report)" if held else ""
            log.warning("events client dropped %s%s", kv(client=conn.label, reason=why), more)
        conn.send.close()
        conn.cancel_scope.cancel()

    # --- one connection ---------------------------------------------------------------------------

    async def serve_connection(self, stream: trio.SocketStream, label: str, handler: Handler) -> None:
        """Read requests and write replies and events on one connection until either side ends it."""
        send, recv = trio.open_memory_channel[bytes](self.queue_size)
        conn = _Connection(send, label)
        self.counters["clients_total"] += 1
        self._connections.add(conn)
        current_client.set(conn.client)  # this task reads and handles the connection's requests
        try:
            with conn.cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, stream, recv, conn)
                    await self._reader(stream, conn, handler)
                    # The client closed its side: let the replies already queued go out, then end — within
                    # a bound, since a client that half-closed may not be reading either.
                    send.close()
                    nursery.cancel_scope.deadline = trio.current_time() + DRAIN_AFTER_EOF_S
        finally:
            self._connections.discard(conn)
            send.close()
            for hook in self.on_disconnect:
                hook(conn.client)
            await trio.aclose_forcefully(stream)

    async def _writer(
        self, stream: trio.SocketStream, recv: trio.MemoryReceiveChannel[bytes], conn: _Connection
    ) -> None:
        try:
            async with recv:
                async for line in recv:
                    conn.queued_bytes -= len(line)
                    await stream.send_all(line)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        conn.cancel_scope.cancel()

    async def _reader(self, stream: trio.SocketStream, conn: _Connection, handler: Handler) -> None:
        buffer = bytearray()
        while True:
            try:
                data = await stream.receive_some(READ_CHUNK)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            buffer += data
            while (end := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[:end]).strip()
                del buffer[: end + 1]
                if line:
                    self._request(conn, line, handler)
            if len(buffer) > cc.MAX_REQUEST_BYTES:
                self._reply(
                    conn, cc.reply_error(None, None, f"request longer than {cc.MAX_REQUEST_BYTES} bytes")
                )
                return

    def _request(self, conn: _Connection, line: bytes, handler: Handler) -> None:
        self.counters["commands_total"] += 1
        try:
            request = cc.parse_request(line)
        except cc.CommandError as e:
            self.counters["commands_failed_total"] += 1
            self._reply(conn, cc.reply_error(e.request_id, e.cmd, str(e)))
            return
        command = request.command
        try:
            if isinstance(command, cc.Subscribe):
                result = dict(handler(cc.Status()))  # a screen draws its first frame from this
                conn.subscribed, conn.filter = True, command.events
            elif isinstance(command, cc.Unsubscribe):
                conn.subscribed, conn.filter = False, None
                result = {}
            else:
                result = dict(handler(command))
        except cc.CommandError as e:
            self.counters["commands_failed_total"] += 1
            self._reply(conn, cc.reply_error(request.id, request.cmd, str(e)))
            return
        except Exception as e:  # a bug behind one command must not end the socket, nor the daemon
            self.counters["commands_failed_total"] += 1
            if self._error_log.allow(time.monotonic()) is not None:  # a client repeating it must not flood
                log.exception("control command failed %s", kv(cmd=request.cmd))
            self._reply(conn, cc.reply_error(request.id, request.cmd, f"internal error: {type(e).__name__}"))
            return
        self._reply(conn, cc.reply_ok(request.id, request.cmd, result))

    def _reply(self, conn: _Connection, line: bytes) -> None:
        if conn in self._connections:
            self._offer(conn, line)


def peer_label(sock: socket.socket) -> str:
    """`pid=… uid=…` of the process at the other end (SO_PEERCRED), for the log."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
    except OSError:
        return "unknown"
    return f"pid={pid},uid={uid}"


async def serve_events(
    path: str,
    hub: EventHub,
    handler: Handler,
    *,
    group: str = "",
    group_access: bool = True,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the event and control socket at `path` until cancelled.

    The socket is mode 0660 with `group` (a name or number; empty = the daemon's own group), or 0600 without
    `group_access`. Raises EventsSocketError/OSError before `task_status.started(path)` when it cannot be
    set up as configured; the socket file is removed on the way out.
    """
    gid = resolve_group(group) if group and group_access else -1

    def give_to_group(path: str) -> None:
        if gid < 0:
            return
        try:
            os.chown(path, -1, gid)
        except PermissionError:
            raise EventsSocketError(
                errno.EPERM,
                f"events.group: cannot give {path} to group {group!r}: the daemon's user is not in it; "
                f"add SupplementaryGroups={group} to the unit or change the setting",
            ) from None
        _warn_if_unreachable(os.path.dirname(path), gid, group)

    async with listening_socket(
        path,
        key="events.socket",
        mode=0o660 if group_access else 0o600,
        # A new runtime directory must let the socket's group reach it; the socket's own mode guards it.
        dir_mode=0o711 if group_access else 0o700,
        before_listen=give_to_group,
    ) as sock:
        log.debug("events socket listening %s", kv(path=path, group=group or None, group_access=group_access))
        async with trio.open_nursery() as nursery:
            task_status.started(path)
            while True:
                conn = await accept(sock, "events socket")
                nursery.start_soon(_serve_one, conn, hub, handler)


def group_can_reach(directory_stat: os.stat_result, gid: int) -> bool:
    """Whether members of `gid` may pass through a directory with this stat (search permission)."""
    mode = directory_stat.st_mode
    return bool(mode & 0o001) or (directory_stat.st_gid == gid and bool(mode & 0o010))


def _warn_if_unreachable(directory: str, gid: int, group: str) -> None:
    # The unit's RuntimeDirectoryMode=0750 keeps /run/voiceterm to the voiceterm group; a socket given to
    # another group is useless unless its members can pass through the directory.
    try:
        st = os.stat(directory)
    except OSError:
        return
    if not group_can_reach(st, gid):
        log.warning(
            "events.group %s cannot reach the socket: %s is mode %o; add RuntimeDirectoryMode=0751 "
            "(systemctl edit voiceterm), or add the group's users to the daemon's group instead",
            group,
            directory,
            st.st_mode & 0o7777,
        )


async def _serve_one(conn: trio.socket.SocketType, hub: EventHub, handler: Handler) -> None:
    label = peer_label(conn)  # type: ignore[arg-type]
    stream = trio.SocketStream(conn)
    if hub.full:
        hub.counters["clients_refused_total"] += 1
        line = cc.reply_error(None, None, f"too many clients ({hub.max_clients}); raise events.max_clients")
        with trio.move_on_after(1.0):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(line)
        await trio.aclose_forcefully(stream)
        return
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
    await hub.serve_connection(stream, label, handler)


__all__ = [
    "SOCKET_NAME",
    "EventHub",
    "EventsSocketError",
    "Handler",
    "current_client",
    "resolve_group",
    "serve_events",
]
