"""Barge-in against the real Pipecat bot: a press on the (mock) GPIO button while the bot speaks flushes the
local speaker at once and tells the server, which interrupts itself.

Real parts throughout: the echo bot (pipecat) on loopback, the Link, the Speaker on an ALSA file PCM, the
Panel on gpiozero's MockFactory, and the pure Terminal, wired the way the app wires them. Latencies are
printed (run with -s).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import trio

from voiceterm.config_load import config_from_dict
from voiceterm.core.terminal import Terminal
from voiceterm.core.terminal_commands import Earcon, FlushPlayback, SendMessage
from voiceterm.io.gpio import Panel
from voiceterm.io.link import Link, SessionStarted
from voiceterm.protocol import rtvi, rtvi_events
from voiceterm.protocol.events import AudioChunk, Interruption
from voiceterm_devkit.alsa_files import AlsaFileConfig, read_raw
from voiceterm_devkit.bot import BotProcess, event_is

pytestmark = [pytest.mark.bot, pytest.mark.alsa]

BUTTON = 17
OUT_RATE = 24000
SAY_MS = 2000


class Wiring:
    """The app's glue in small: inputs to the Terminal, its commands carried out, with a record of both."""

    def __init__(self, terminal: Terminal, link: Link, speaker: Any) -> None:
        self.terminal = terminal
        self.link = link
        self.speaker = speaker
        self.flushes: list[tuple[float, str, int, bool]] = []  # (time, reason, frames dropped, playing after)
        self.sent: list[tuple[float, dict]] = []
        self.events: list[tuple[float, Any]] = []
        self.bot_audio: list[tuple[float, int, bool]] = []  # (time, bytes, played)
        self._view = trio.Event()
        self._timer = trio.Event()
        self.changed = trio.Event()  # any state change, for the test's waits

    def apply(self, commands: list[Any]) -> None:
        now = trio.current_time()
        for cmd in commands:
            if isinstance(cmd, SendMessage):
                self.sent.append((now, cmd.message))
                self.link.send_message(cmd.message)
            elif isinstance(cmd, FlushPlayback):
                dropped = self.speaker.flush()
                self.flushes.append((now, cmd.reason, dropped, self.speaker.playing))
            elif isinstance(cmd, Earcon):
                self.speaker.earcon(cmd.name)
        self.poke()

    def poke(self) -> None:
        self._view.set()
        self._timer.set()
        self.changed.set()
        self.changed = trio.Event()

    async def wait_view_change(self) -> None:
        await self._view.wait()
        self._view = trio.Event()

    async def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        with trio.move_on_after(timeout):
            while not predicate():
                # woken by any state change; the LED task's own progress is not one, so look every 10 ms too
                with trio.move_on_after(0.01):
                    await self.changed.wait()
            return
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    async def link_events(self) -> None:
        async for event in self.link.events:
            now = trio.current_time()
            if isinstance(event, AudioChunk):
                played = self.terminal.accept_bot_audio(now)
                if played:
                    self.speaker.enqueue(event)
                self.bot_audio.append((now, len(event.pcm), played))
                self.poke()
                continue
            self.events.append((now, event))
            if isinstance(event, SessionStarted):
                self.apply(self.terminal.session_started(now))
            else:
                self.apply(self.terminal.bot(event, now))

    async def inputs(self, recv: trio.MemoryReceiveChannel) -> None:
        async for edge in recv:
            self.apply(self.terminal.panel(edge))

    async def timers(self) -> None:
        while True:
            deadline = self.terminal.next_deadline()
            self._timer = trio.Event()
            with trio.move_on_at(deadline if deadline is not None else trio.current_time() + 3600):
                await self._timer.wait()
            if deadline is not None and trio.current_time() >= deadline:
                self.apply(self.terminal.tick(trio.current_time()))

    async def playback_watch(self) -> None:
        playing = False
        while True:
            await trio.sleep(0.02)
            if self.speaker.playing != playing:
                playing = self.speaker.playing
                self.apply(self.terminal.playback_active(playing, trio.current_time()))

    def sent_ptt(self) -> list[str]:
        return [m["data"]["d"]["state"] for _, m in self.sent if m["data"].get("t") == "push_to_talk"]


async def test_a_press_during_bot_speech_flushes_playback_and_interrupts_the_bot(
    shared_bot: BotProcess, mock_factory, tmp_path, monkeypatch
) -> None:
    pytest.importorskip("alsaaudio")
    from voiceterm.io.speaker import Speaker

    bot = shared_bot
    alsa = AlsaFileConfig(tmp_path / "alsa").add_playback("spk", tmp_path / "out.raw")
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(alsa.write()))
    cfg = config_from_dict(
        {
            "bot": {"url": bot.url, "connect_timeout": 2.0, "device_id": "panel-test"},
            "audio": {"capture_device": "mic", "playback_device": "spk", "pacing": "wall-clock"},
            "earcons": {"enabled": False},  # the output file then holds the bot's voice and nothing else
            "gpio": {"button_pin": BUTTON, "led_pin": 27},
            "reconnect": {"initial_delay": 0.1, "max_delay": 0.5},
        }
    )
    terminal = Terminal(cfg, trio.current_time())
    link = Link(cfg)
    speaker = Speaker(cfg.audio, cfg.earcons)
    panel = Panel(cfg.gpio, pin_factory=mock_factory)
    wiring = Wiring(terminal, link, speaker)
    link.subscribe(lambda status: wiring.apply(terminal.link(status, trio.current_time())))
    pin = mock_factory.pin(BUTTON)
    edge_send, edge_recv = trio.open_memory_channel(64)
    bytes_per_s = OUT_RATE * 2

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(speaker.run)
            await nursery.start(
                panel.run, edge_send, (lambda: terminal.state().view), wiring.wait_view_change
            )
            await nursery.start(link.run)
            for task in (wiring.link_events, wiring.timers, wiring.playback_watch):
                nursery.start_soon(task)
            nursery.start_soon(wiring.inputs, edge_recv)
            try:
                await wiring.wait(lambda: terminal.state().view.name == "ready", 10, "the link to be ready")
                mark = bot.mark()
                assert link.send_message(rtvi.client_message("say", {"ms": SAY_MS}))
                await wiring.wait(
                    lambda: (
                        terminal.state().view.name == "speaking"
                        and speaker.playing
                        and sum(n for _, n, _ in wiring.bot_audio) >= 0.4 * bytes_per_s
                    ),
                    5,
                    "the bot to be audibly speaking",
                )
                first_audio_at = wiring.bot_audio[0][0]
                await wiring.wait(lambda: panel.showing == "speaking", 1, "the LED to show the bot speaking")

                # the press: the pin goes low (pull-up wiring)
                press_at, press_mono = trio.current_time(), time.monotonic()
                pin.drive_low()
                await wiring.wait(
                    lambda: wiring.flushes and wiring.flushes[-1][1] == "barge-in", 1, "the flush"
                )
                flush_at, _, dropped, playing_after = wiring.flushes[-1]
                assert not playing_after  # silent at once, not after the queue drains
                assert wiring.sent_ptt() == ["start"]
                assert wiring.sent[-1][0] == flush_at  # the flush came first, the message right after it

                server = await bot.wait_for_async(event_is("interrupted"), 5, since=mark)
                await wiring.wait(
                    lambda: (
                        any(isinstance(e, Interruption) for _, e in wiring.events)
                        and any(isinstance(e, rtvi_events.BotInterrupted) for _, e in wiring.events)
                    ),
                    5,
                    "the interruption to come back",
                )
                confirmed_at = min(
                    t for t, e in wiring.events if isinstance(e, (Interruption, rtvi_events.BotInterrupted))
                )
                assert flush_at < confirmed_at  # the speaker did not wait for the server
                assert terminal.state().view.name == "listening"
                await wiring.wait(lambda: panel.showing == "listening", 1, "the LED to show listening")

                pin.drive_high()
                await wiring.wait(lambda: wiring.sent_ptt() == ["start", "stop"], 2, "the release")
                await bot.wait_for_async(
                    lambda e: (
                        e.get("event") == "message"
                        and (e.get("data") or {}).get("t") == "push_to_talk"
                        and e["data"]["d"] == {"state": "stop"}
                    ),
                    5,
                    since=mark,
                )
                await trio.sleep(0.3)  # let anything still in flight arrive (and be judged)
            finally:
                with trio.CancelScope(shield=True):
                    await link.close()
                nursery.cancel_scope.cancel()

    # What the bot saw, in order: say, push-to-talk start (while speaking: it interrupted itself), stop.
    seen = [
        (e["data"] or {}).get("t")
        for e in bot.events()[mark:]
        if e.get("event") == "message" and e.get("type") == "client-message"
    ]
    assert seen == ["say", "push_to_talk", "push_to_talk"]

    received = sum(n for _, n, _ in wiring.bot_audio)
    played = sum(n for _, n, ok in wiring.bot_audio if ok)
    assert received < 0.8 * SAY_MS / 1000 * bytes_per_s  # the bot really stopped early
    # Bot audio in the output file: what played before the flush, plus at most what the device held.
    out = read_raw(tmp_path / "out.raw")
    voiced = np.flatnonzero(out)
    heard_s = (voiced[-1] - voiced[0] + 1) / OUT_RATE
    spoke_before_press_s = flush_at - first_audio_at
    assert heard_s <= spoke_before_press_s + 0.2
    assert heard_s >= spoke_before_press_s - 0.3  # and it did play, in real time
    after_flush = [(t, n, ok) for t, n, ok in wiring.bot_audio if t > flush_at]
    assert all(not ok for t, n, ok in after_flush if t < confirmed_at)  # in-flight audio was not played
    print(
        f"\nbarge-in: press->local flush {1000 * (flush_at - press_at):.0f} ms "
        f"(debounce {cfg.gpio.debounce_ms} ms), press->bot interrupted {1000 * (server['t'] - press_mono):.0f} ms, "
        f"press->interruption back {1000 * (confirmed_at - press_at):.0f} ms; "
        f"{dropped} queued frames dropped by the flush; "
        f"bot audio {received} B received, {played} B played, {len(after_flush)} chunks after the flush "
        f"({terminal.state().counters['stale_bot_audio_dropped_total']} dropped as stale); "
        f"{heard_s:.2f} s of the {SAY_MS / 1000:.1f} s tone heard"
    )
    assert flush_at - press_at <= cfg.gpio.debounce_ms / 1000 + 0.1
