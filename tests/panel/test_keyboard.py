"""The keyboard stand-in: bytes to keys (escape sequences skipped), a real pty in cbreak mode and restored,
pipes read to their end, and keys reaching the same Terminal inputs as the button."""

from __future__ import annotations

import os
import pty
import termios
from functools import partial

import pytest
import trio

from voiceterm.config_load import config_from_dict
from voiceterm.core.linkstate import LinkState, LinkStatus
from voiceterm.core.terminal import Terminal
from voiceterm.core.terminal_commands import Quit, ReconnectNow, SendMessage
from voiceterm.core.terminal_inputs import KeyPress
from voiceterm.io.keyboard import KeyParser, read_keys


def test_parser_maps_keys_and_ignores_the_rest() -> None:
    p = KeyParser()
    assert p.feed(b" mMrRqQx\n\t1") == [" ", "m", "m", "r", "r", "q", "q"]
    assert p.feed(b"\x04") == ["q"]


def test_parser_skips_escape_sequences_even_split_across_reads() -> None:
    p = KeyParser()
    # F2 is ESC O Q, up arrow ESC [ A, ctrl-right ESC [ 1 ; 5 C, Alt-m ESC m: none of them is a key here
    assert p.feed(b"\x1bOQ\x1b[A\x1b[1;5C\x1bm") == []
    assert p.feed(b"\x1b[1;") == []
    assert p.feed(b"5Dm") == ["m"]
    assert p.feed(b"\x1b") == []
    assert p.feed(b"O") == []
    assert p.feed(b"Q ") == [" "]


async def test_pty_keys_arrive_and_the_terminal_mode_is_restored() -> None:
    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        send, recv = trio.open_memory_channel(16)
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(read_keys, send, fd=slave))
                os.write(master, b" m")
                assert [(await recv.receive()).key, (await recv.receive()).key] == [" ", "m"]
                during = termios.tcgetattr(slave)
                assert not during[3] & termios.ICANON  # no line buffering: a key counts at once
                assert not during[3] & termios.ECHO
                assert during[3] & termios.ISIG  # Ctrl-C still stops the daemon
                os.write(master, b"\x1b[Aq")
                assert (await recv.receive()).key == "q"
                nursery.cancel_scope.cancel()
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


async def test_a_pipe_is_read_to_its_end() -> None:
    r, w = os.pipe()
    try:
        os.write(w, b"r q")
        os.close(w)
        w = -1
        send, recv = trio.open_memory_channel(16)
        with trio.fail_after(5):
            await read_keys(send, fd=r)
            assert [k.key async for k in recv] == ["r", " ", "q"]  # and the channel was closed at EOF
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


async def test_a_regular_file_or_dev_null_works_without_epoll(tmp_path) -> None:
    path = tmp_path / "keys"
    path.write_bytes(b"m")
    for name in (str(path), os.devnull):
        fd = os.open(name, os.O_RDONLY)
        try:
            send, recv = trio.open_memory_channel(4)
            with trio.fail_after(5):
                await read_keys(send, fd=fd)
                got = [k.key async for k in recv]
            assert got == (["m"] if name == str(path) else [])
        finally:
            os.close(fd)


async def test_a_closed_receiver_ends_the_reader_quietly() -> None:
    r, w = os.pipe()
    try:
        os.write(w, b"mmm")
        send, recv = trio.open_memory_channel(0)
        recv.close()
        with trio.fail_after(5):
            await read_keys(send, fd=r)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize(("keys", "want"), [(b" ", "start"), (b"r", ReconnectNow()), (b"q", Quit())])
async def test_keys_drive_the_terminal_like_the_button(keys, want) -> None:
    """The same channel and the same Terminal inputs as GPIO edges (the app's _inputs loop, in small)."""
    term = Terminal(config_from_dict({}), 0.0)
    term.link(LinkStatus(LinkState.READY), 0.0)
    r, w = os.pipe()
    os.write(w, keys)
    os.close(w)
    send, recv = trio.open_memory_channel(8)
    try:
        with trio.fail_after(5):
            await read_keys(send, fd=r)
            commands = []
            async for item in recv:
                assert isinstance(item, KeyPress) and item.at <= trio.current_time()
                commands += term.panel(item)
    finally:
        os.close(r)
    if want == "start":
        assert isinstance(commands[0], SendMessage)
        assert commands[0].message["data"] == {"t": "push_to_talk", "d": {"state": "start"}}
        assert term.state().view.name == "listening"
    else:
        assert commands == [want]
