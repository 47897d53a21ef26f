"""The terminal keyboard as a stand-in for the GPIO button, so the daemon can drive a bot from a laptop.

Keys: space = talk, m = mute, r = reconnect now, q = quit. Terminals report key presses but never key
releases, so space toggles a turn in every push-to-talk mode (press to talk, press again to stop). Keys go into
the same channel as GPIO edges, as typed `KeyPress`es stamped with the trio time they were read. The terminal is put in cbreak mode (no echo, no line
buffering, Ctrl-C still a signal) and always restored on exit.
"""

from __future__ import annotations

import logging
import os
import sys
import termios
import tty

import trio

from voiceterm.core.terminal_inputs import KeyPress

__all__ = ["HELP", "KeyParser", "read_keys"]

log = logging.getLogger("voiceterm.keyboard")

HELP = "keyboard: space = talk (toggles: terminals send no key release), m = mute, r = reconnect, q = quit"

# Byte -> key name. Ctrl-D ends a line-less session like q; Ctrl-C stays a signal (cbreak keeps ISIG).
_KEYS = {
    b" "[0]: " ",
    b"m"[0]: "m",
    b"M"[0]: "m",
    b"r"[0]: "r",
    b"R"[0]: "r",
    b"q"[0]: "q",
    b"Q"[0]: "q",
    0x04: "q",
}
_ESC = 0x1B


class KeyParser:
    """Bytes from a terminal to key names, skipping escape sequences (arrows, F-keys send letters such as
    "\\x1bOQ" for F2 that must not read as q). Keeps state across reads, as a sequence may be split."""

    def __init__(self) -> None:
        self._state = "text"  # "text", "esc" (after ESC), "csi" (after ESC [ or ESC O)

    def feed(self, data: bytes) -> list[str]:
        keys: list[str] = []
        for b in data:
            if self._state == "esc":
                # ESC [ and ESC O start a sequence ending in a final byte; ESC x (Alt+x) is one key: dropped.
                self._state = "csi" if b in (0x5B, 0x4F) else "text"
                continue
            if self._state == "csi":
                if 0x40 <= b <= 0x7E:
                    self._state = "text"
                continue
            if b == _ESC:
                self._state = "esc"
                continue
            key = _KEYS.get(b)
            if key is not None:
                keys.append(key)
        return keys


async def _read(fd: int) -> bytes:
    try:
        await trio.lowlevel.wait_readable(fd)
    except OSError:
        # epoll refuses regular files and /dev/null (stdin under systemd); reads on those never block.
        return await trio.to_thread.run_sync(os.read, fd, 64, abandon_on_cancel=True)
    return os.read(fd, 64)


async def read_keys(send: trio.MemorySendChannel[KeyPress], *, fd: int | None = None) -> None:
    """Read keys from `fd` (default stdin) and send them until end of input; owns and closes `send`.

    A terminal is switched to cbreak mode and restored when this returns or is cancelled; a pipe or file is
    read as it is.
    """
    if fd is None:
        fd = sys.stdin.fileno()
    saved = None
    if os.isatty(fd):
        saved = termios.tcgetattr(fd)
        tty.setcbreak(fd, termios.TCSANOW)
    else:
        log.info("keyboard: stdin is not a terminal; reading keys from it anyway")
    parser = KeyParser()
    try:
        async with send:
            log.info(HELP)
            while True:
                data = await _read(fd)
                if not data:
                    log.info("keyboard: end of input; the keyboard no longer controls the terminal")
                    return
                now = trio.current_time()
                for key in parser.feed(data):
                    try:
                        await send.send(KeyPress(key, now))
                    except trio.BrokenResourceError:
                        return  # the daemon stopped listening: it is shutting down
    finally:
        if saved is not None:
            # TCSADRAIN: let pending output (log lines) finish in the mode they were written for.
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
