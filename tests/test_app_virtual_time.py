"""The daemon's glue in virtual time (trio's MockClock, autojump): panel inputs timed by their own stamps,
the brain's state published as events from one place, and the SIGTERM goodbye bounded by its grace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from link.memnet import (  # tests/link/memnet.py (tests/ is on sys.path)
    MemoryBot,
    bot_ready_for,
    parse_message,
)
from voiceterm.app import SHUTDOWN_GRACE_S, Daemon
from voiceterm.config_load import config_from_dict
from voiceterm.core import device_events as de
from voiceterm.core.linkevents import ReceivedAudio
from voiceterm.core.linkstate import LinkState, LinkStatus
from voiceterm.core.terminal_inputs import ButtonEdge, KeyPress
from voiceterm.io.link import Link

URL = "ws://bot.test/ws"


def config(**sections):
    base = {"bot": {"url": URL}, "gpio": {"enabled": False}, "earcons": {"enabled": False}}
    return config_from_dict({**base, **sections}, environ={})


class Published:
    """What the daemon publishes, in order (the EventHub's own publish, recorded)."""

    def __init__(self, daemon: Daemon) -> None:
        self.events: list[tuple[float, de.DeviceEvent]] = []
        publish = daemon.events.publish

        def record(event: de.DeviceEvent) -> None:
            self.events.append((trio.current_time(), event))
            publish(event)

        daemon.events.publish = record  # type: ignore[method-assign]

    def first(self, wanted: de.DeviceEvent) -> float:
        """When `wanted` was first published."""
        return next(t for t, e in self.events if e == wanted)


@asynccontextmanager
async def panel_of(daemon: Daemon) -> AsyncIterator[trio.MemorySendChannel]:
    """The daemon's input and timer tasks, its link ready; yields the panel's input channel."""
    daemon._on_link_status(LinkStatus(LinkState.READY))
    send, recv = trio.open_memory_channel(8)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(daemon._inputs, recv)
            nursery.start_soon(daemon._timers)
            yield send
            nursery.cancel_scope.cancel()


async def test_a_long_press_is_timed_from_the_edge_not_from_its_delivery(autojump_clock) -> None:
    """A muted hold-to-talk terminal is unmuted by a long press. The edge reaches the brain 0.4 s after it
    happened (a busy loop); the long press falls due a long_press_ms after the edge itself."""
    daemon = Daemon(
        config(push_to_talk={"start_muted": True}, gpio={"enabled": False, "long_press_ms": 1000})
    )
    published = Published(daemon)
    async with panel_of(daemon) as panel:
        pressed_at = trio.current_time()
        await trio.sleep(0.4)
        await panel.send(ButtonEdge(True, pressed_at))  # stamped when it happened
        await trio.sleep(0.5)
        assert daemon.terminal.state().muted  # 0.9 s after the edge: not yet a long press
        await trio.sleep(0.2)
        assert not daemon.terminal.state().muted
    assert published.first(de.MuteChanged(False)) == pressed_at + 1.0  # not pressed_at + 0.4 + 1.0
    # The press itself is told when the brain got it (its debounce had long passed by then).
    assert published.first(de.Button(True)) == pressed_at + 0.4
    assert [e.NAME for _, e in published.events] == [
        "transport-state-changed",  # the link's status, then what it changed in the terminal:
        "mute-changed",  # the first look at the terminal: it starts muted
        "led",  # starting -> muted
        "button",
        "mute-changed",
        "led",  # muted -> ready
    ]


async def test_keys_and_the_source_the_stream_names(autojump_clock) -> None:
    daemon = Daemon(config(push_to_talk={"send_messages": False}))
    published = Published(daemon)
    async with panel_of(daemon) as panel:
        await panel.send(KeyPress(" ", trio.current_time()))
        await trio.sleep(0.1)
        assert daemon.terminal.state().turn
        await panel.send(KeyPress("m", trio.current_time()))
        await trio.sleep(0.1)
    names = [(e.NAME, getattr(e, "source", None)) for _, e in published.events]
    assert ("turn-started", "keyboard") in names and ("turn-ended", "keyboard") in names
    assert published.first(de.MuteChanged(True)) == published.first(de.TurnEnded("keyboard"))


async def test_the_sigterm_goodbye_is_bounded_by_its_grace(autojump_clock) -> None:
    """SIGTERM says goodbye to the bot (disconnect-bot) and every task has ended within SHUTDOWN_GRACE_S of
    virtual time (the unit's one-second stop; the link's own close is bounded in tests/link)."""
    heard: list[str] = []

    async def listening_bot(request) -> None:
        ws = await request.accept()
        await bot_ready_for(ws)
        while True:
            heard.append(parse_message(await ws.get_message())["type"])

    bot = MemoryBot(listening_bot)
    cfg = config(heartbeat={"interval": 0})
    daemon = Daemon(cfg)
    daemon.link = Link(cfg, open_stream=bot.open_stream, device_id="test-device")
    ready = trio.Event()
    daemon.link.subscribe(lambda status: ready.set() if status.state is LinkState.READY else None)
    with trio.fail_after(30):
        async with trio.open_nursery() as outer:
            await outer.start(bot.serve)
            async with trio.open_nursery() as nursery:
                daemon._nursery = nursery
                await nursery.start(daemon.link.run)
                await ready.wait()
                asked = trio.current_time()
                daemon.request_stop("SIGTERM")
            stopped = trio.current_time() - asked
            outer.cancel_scope.cancel()
    assert "disconnect-bot" in heard
    assert stopped <= SHUTDOWN_GRACE_S


async def test_bot_audio_the_link_hands_over_itself_cannot_raise_into_the_link(
    autojump_clock, caplog
) -> None:
    """Link.handle_audio runs the daemon's audio handler in the link's own task: what that handling raises
    costs the chunk (counted, one line), never the link's reader."""
    daemon = Daemon(config())

    class BrokenSpeaker:
        def enqueue(self, chunk) -> None:
            raise ValueError("a speaker that cannot take it")

    daemon.speaker = BrokenSpeaker()  # type: ignore[assignment]
    chunk = ReceivedAudio(b"\x00\x00" * 480, 24000, 1, received_at=trio.current_time())
    daemon._bot_audio_from_link(chunk)
    daemon._bot_audio_from_link(chunk)
    assert daemon.counters["bot_events_failed_total"] == 2
    lines = [r.getMessage() for r in caplog.records if "handling it failed" in r.getMessage()]
    assert lines == ["bot event dropped: handling it failed error=ValueError"]  # once a minute at most
