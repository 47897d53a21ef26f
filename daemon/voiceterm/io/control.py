"""The status socket behind `voiceterm status`, and the atomic file writer for the Prometheus textfile.

Each connection to the unix stream socket gets one JSON document (the daemon's snapshot, one line) and is
closed; the client sends nothing. The socket lives in systemd's RuntimeDirectory, is mode 0660 (the
daemon's user and group), and is removed when the server stops.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import trio

from voiceterm import safejson
from voiceterm.core.device_events import jsonable

log = logging.getLogger("voiceterm.control")

SOCKET_NAME = "status.sock"
RUN_DIR = "/run/voiceterm"  # RuntimeDirectory=voiceterm in the unit
SOCKET_MODE = 0o660  # the daemon's group may read the status; nobody else
MAX_CLIENTS = 8  # connections answered at once; more wait in the kernel's listen backlog
LISTEN_BACKLOG = 16
SEND_TIMEOUT_S = 2.0  # a client that does not read its answer is dropped after this
ACCEPT_RETRY_S = 0.5  # pause after a failed accept (EMFILE) instead of spinning
CONNECT_RETRY_S = 0.01  # client: pause between connects while the daemon's backlog is full
MAX_DOCUMENT_BYTES = 1 << 20  # the client refuses anything bigger: a status document is a few KB


class StatusUnavailable(ConnectionError):
    """No daemon answers on the status socket; str() is one line saying why and what to check."""

    def __init__(self, err: int, message: str) -> None:
        super().__init__(err, message)

    def __str__(self) -> str:
        return self.strerror or ""


def default_socket_path(
    environ: Mapping[str, str] | None = None, run_dir: str = RUN_DIR, name: str = SOCKET_NAME
) -> str:
    """Where the daemon listens and `voiceterm status` looks, when the configuration names no socket.

    `name` is the socket's file name (the status socket's by default; the event socket sits beside it).

    In order: systemd's `$RUNTIME_DIRECTORY`; /run/voiceterm when the socket is already there (the client
    side) or the directory is ours to write; `$XDG_RUNTIME_DIR/voiceterm`; /tmp/voiceterm-<uid>.
    """
    env = os.environ if environ is None else environ
    runtime = env.get("RUNTIME_DIRECTORY", "")
    if runtime:
        # Several RuntimeDirectory= entries arrive colon-separated; ours is the first.
        return os.path.join(runtime.split(":")[0], name)
    in_run = os.path.join(run_dir, name)
    if os.path.exists(in_run):
        return in_run
    if os.path.isdir(run_dir):
        if os.access(run_dir, os.W_OK):
            return in_run
    elif os.access(os.path.dirname(run_dir) or "/", os.W_OK):
        return in_run  # e.g. root in development: the server creates /run/voiceterm
    xdg = env.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "voiceterm", name)
    return os.path.join(tempfile.gettempdir(), f"voiceterm-{os.getuid()}", name)


def encode_snapshot(snap: Mapping[str, Any]) -> bytes:
    """The snapshot as one line of strict UTF-8 JSON: NaN/inf become null, enums their value, lone
    surrogates U+FFFD, remembered secrets <redacted>, the rest str(); never fails (see safejson)."""
    return safejson.dumps_line(jsonable(snap))


def prepare_socket_path(path: str, key: str = "[status] socket", dir_mode: int = 0o700) -> None:
    """Make the socket's directory (`dir_mode` when it is new); remove a stale socket; refuse to take over a
    live one or a plain file. `key` is the setting that moves the socket, named in the errors."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=dir_mode, exist_ok=True)
        os.chmod(parent, dir_mode)  # makedirs honours the umask
    st = os.stat(parent)
    uid = os.getuid()
    if uid != 0 and st.st_uid not in (uid, 0):
        # e.g. a /tmp/voiceterm-<uid> planted by someone else: they could swap the socket under us.
        raise PermissionError(errno.EPERM, f"{parent} belongs to another user; remove it or set {key}")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(errno.EEXIST, f"{path} exists and is not a socket; remove it or set {key}")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left behind by a daemon that died without cleaning up
        log.info("removed stale socket path=%s", path)
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"another voiceterm already answers on {path}")


@contextlib.asynccontextmanager
async def listening_socket(
    path: str,
    *,
    key: str,
    mode: int,
    dir_mode: int = 0o700,
    before_listen: Callable[[str], None] | None = None,
) -> AsyncIterator[trio.socket.SocketType]:
    """A listening unix stream socket at `path` with file mode `mode`, removed on the way out.

    `key` is the setting that moves it (named in errors); `before_listen(path)` runs once the file exists
    (to give it to a group). Raises OSError when the path cannot be used.
    """
    prepare_socket_path(path, key, dir_mode)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound: tuple[int, int] | None = None
    try:
        await sock.bind(path)
        st = os.stat(path)
        bound = (st.st_dev, st.st_ino)
        if before_listen is not None:
            before_listen(path)
        os.chmod(path, mode)  # bind() honours the umask (0077 in the unit): widen to the group
        sock.listen(LISTEN_BACKLOG)
        yield sock
    finally:
        sock.close()
        if bound is not None:
            unlink_if_ours(path, bound)


async def accept(sock: trio.socket.SocketType, what: str) -> trio.socket.SocketType:
    """The next connection. Out of file descriptors and the like is logged and retried after a pause: a
    diagnostics socket must never end the daemon, nor spin."""
    while True:
        try:
            conn, _ = await sock.accept()
            return conn
        except OSError as e:
            log.warning("%s accept failed error=%s", what, e.strerror or e)
            await trio.sleep(ACCEPT_RETRY_S)


async def serve_status(
    path: str,
    snapshot: Callable[[], Mapping[str, Any]],
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer every connection on the unix socket `path` with one JSON snapshot, until cancelled.

    `task_status.started(path)` once the socket accepts connections. Raises OSError (before starting) when
    the path cannot be used; the socket file is removed on the way out.
    """
    async with listening_socket(path, key="[status] socket", mode=SOCKET_MODE) as sock:
        log.debug("status socket listening path=%s", path)
        slots = trio.Semaphore(MAX_CLIENTS)
        async with trio.open_nursery() as nursery:
            task_status.started(path)
            while True:
                await slots.acquire()
                conn = await accept(sock, "status socket")
                nursery.start_soon(_answer, conn, snapshot, slots)


def unlink_if_ours(path: str, bound: tuple[int, int]) -> None:
    # Only remove the file we created: a second daemon may have replaced it meanwhile.
    try:
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == bound:
            os.unlink(path)
    except OSError:
        pass


async def _answer(
    conn: trio.socket.SocketType, snapshot: Callable[[], Mapping[str, Any]], slots: trio.Semaphore
) -> None:
    stream = trio.SocketStream(conn)
    try:
        try:
            data = encode_snapshot(snapshot())
        except Exception as e:  # a broken snapshot must not end the daemon; the client learns why
            log.warning("status snapshot failed error=%s", type(e).__name__)
            data = encode_snapshot({"error": f"snapshot failed: {type(e).__name__}"})
        with trio.move_on_after(SEND_TIMEOUT_S):
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client went away first: nothing to tell it
    finally:
        slots.release()
        await trio.aclose_forcefully(stream)


def read_status(path: str, timeout: float = 2.0) -> dict[str, Any]:
    """Blocking client for `voiceterm status`: the daemon's snapshot as a dict.

    Raises StatusUnavailable (an OSError) when nothing answers, ValueError when the answer is not a JSON
    object; both with a one-line message.
    """
    sock = connect_unix(path, timeout)
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise StatusUnavailable(errno.ETIMEDOUT, f"no answer within {timeout:g} s") from None
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_DOCUMENT_BYTES:
                raise ValueError(
                    f"answer larger than {MAX_DOCUMENT_BYTES} bytes: not a voiceterm status socket"
                )
            chunks.append(chunk)
    except OSError as e:
        if isinstance(e, StatusUnavailable):
            raise
        raise StatusUnavailable(e.errno or errno.EIO, e.strerror or type(e).__name__) from None
    finally:
        sock.close()
    try:
        doc = safejson.loads(b"".join(chunks), max_bytes=MAX_DOCUMENT_BYTES)
    except safejson.JSONRejected:
        raise ValueError("the answer is not JSON: not a voiceterm status socket") from None
    if isinstance(doc, dict):
        return doc
    raise ValueError("the answer is not a JSON object: not a voiceterm status socket")


def connect_unix(path: str, timeout: float) -> socket.socket:
    """A blocking client connection to the daemon's socket at `path` (with `timeout` set on it).

    Raises StatusUnavailable with a one-line reason a person can act on when nothing usable answers.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        _connect(sock, path, time.monotonic() + timeout)
        return sock
    except FileNotFoundError:
        why = StatusUnavailable(errno.ENOENT, "no socket there (is the daemon running?)")
    except ConnectionRefusedError:
        why = StatusUnavailable(
            errno.ECONNREFUSED, "connection refused: a stale socket (is the daemon running?)"
        )
    except PermissionError:
        why = StatusUnavailable(
            errno.EACCES, "permission denied: run as root or as a member of the socket's group (voiceterm)"
        )
    except TimeoutError:
        why = StatusUnavailable(errno.ETIMEDOUT, f"no connection within {timeout:g} s")
    except OSError as e:
        why = StatusUnavailable(e.errno or errno.EIO, e.strerror or type(e).__name__)
    sock.close()
    raise why


def _connect(sock: socket.socket, path: str, deadline: float) -> None:
    # A unix socket whose listen backlog is full fails a timed connect with EAGAIN at once instead of
    # waiting (the daemon is busy answering others): try again until the deadline.
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError(errno.ETIMEDOUT, "listen backlog full") from None
            time.sleep(CONNECT_RETRY_S)


def write_textfile(path: str, text: str, mode: int = 0o644) -> None:
    """Replace `path` with `text` atomically (temp file in the same directory, then rename).

    node_exporter's textfile collector reads whole files: a half-written one would be a scrape error.
    No fsync: on an SD card a metrics file every 15 s is not worth the wear, and a lost update after a
    power cut is harmless. `mode` defaults to world-readable because the exporter runs as another user.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".voiceterm-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


__all__ = [
    "SOCKET_NAME",
    "StatusUnavailable",
    "accept",
    "connect_unix",
    "default_socket_path",
    "encode_snapshot",
    "listening_socket",
    "prepare_socket_path",
    "read_status",
    "serve_status",
    "unlink_if_ours",
    "write_textfile",
]
