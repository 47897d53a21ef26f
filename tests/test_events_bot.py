"""The event stream and control socket against the real Pipecat bot, with the whole daemon in this process.

Real parts: the `conversation` test bot (pipecat, RTVI on: it transcribes each push-to-talk turn and answers
with text and speech), the Daemon with its Link, Microphone and Speaker on ALSA file PCMs, the Panel on
gpiozero's MockFactory, and the event socket. Subscribers are plain unix-socket clients; `voiceterm events`
runs as a real subprocess. Figures are printed (run with -s).
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from voiceterm.config import Config
from voiceterm.config_load import config_from_dict
from voiceterm_devkit.alsa_files import AlsaFileConfig, noise, write_raw
from voiceterm_devkit.bot import BotProcess, event_is
from voiceterm_devkit.eventsock import Client, running, wait_until

pytestmark = [pytest.mark.bot, pytest.mark.alsa]

MIC_RATE = 16000
BUTTON = 17
HOLD_S = 0.8


@pytest.fixture(scope="module")
def conversation_bot(tmp_path_factory: pytest.TempPathFactory):
    if __import__("importlib").util.find_spec("pipecat") is None:
        pytest.skip("pipecat-ai is not installed (install the 'bot' extra)")
    bot = BotProcess(log_dir=tmp_path_factory.mktemp("conversation-bot"), mode="conversation")
    bot.start()
    bot.wait_listening()
    yield bot
    bot.stop()


def make_config(tmp_path: Path, bot: BotProcess, monkeypatch, **events: Any) -> Config:
    pytest.importorskip("alsaaudio")
    alsa = AlsaFileConfig(tmp_path / "alsa")
    mic = tmp_path / "mic.raw"
    write_raw(mic, noise(MIC_RATE * 40, seed=3, amplitude=6000))  # longer than a test: no stale re-reads
    alsa.add_capture("mic", mic).add_playback("spk", tmp_path / "spk.raw")
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(alsa.write()))
    return config_from_dict(
        {
            "bot": {"url": bot.url, "connect_timeout": 2.0, "ready_timeout": 2.0, "device_id": "events-test"},
            "audio": {"capture_device": "mic", "playback_device": "spk", "pacing": "wall-clock"},
            "earcons": {"enabled": False},
            "push_to_talk": {"tail_ms": 200},
            "gpio": {"pin_factory": "mock", "button_pin": BUTTON, "led_pin": 27},
            "reconnect": {"initial_delay": 0.1, "max_delay": 0.5},
            "status": {"socket": str(tmp_path / "status.sock")},
            "events": {"socket": str(tmp_path / "events.sock"), **events},
        }
    )


def in_order(names: list[str], expected: list[str]) -> bool:
    it = iter(names)
    return all(any(n == want for n in it) for want in expected)


async def test_a_subscriber_sees_the_handshake_speaking_and_transcripts_in_order(
    conversation_bot: BotProcess, tmp_path: Path, monkeypatch
) -> None:
    cfg = make_config(tmp_path, conversation_bot, monkeypatch)
    with trio.fail_after(40):
        async with running(cfg) as daemon, Client.open(cfg.events.socket) as sub:
            reply = await sub.request("subscribe")
            assert reply["ok"] and reply["result"]["status"] == "ready"  # the first frame a screen draws
            assert reply["result"]["events"]["subscribers"] == 0  # the state just before it subscribed

            # A fresh session, so the handshake happens while we watch.
            assert (await sub.request("reconnect"))["ok"]
            await wait_until(
                lambda: in_order(sub.names(), ["disconnected", "bot-ready"]), 10, "the new session"
            )

            mark = conversation_bot.mark()
            assert (await sub.request("talk", state="start"))["result"] == {"turn": True}
            await trio.sleep(HOLD_S)  # the user talking
            assert (await sub.request("talk", state="stop"))["result"] == {"turn": False}
            await conversation_bot.wait_for_async(event_is("turn"), 5, since=mark)
            await wait_until(lambda: "bot-stopped-speaking" in sub.names(), 10)

            # The CLI in readable form, against the same daemon, for the next turn.
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "voiceterm", "events", "--socket", cfg.events.socket],
                stdout=__import__("subprocess").PIPE,
            )
            try:
                await wait_until(lambda: daemon.events.subscribers == 2, 5, "the CLI to subscribe")
                await sub.request("talk", state="start")
                await trio.sleep(HOLD_S)
                await sub.request("talk", state="stop")
                await wait_until(lambda: sub.names().count("bot-stopped-speaking") >= 2, 10)
                await wait_until(lambda: daemon.terminal.state().view.name == "ready", 5)
            finally:
                proc.terminate()
                readable = (await proc.stdout.receive_some(65536)).decode()  # type: ignore[union-attr]
                await proc.wait()

    names = sub.names()
    print("\nevent stream:", " ".join(names))
    # The handshake of the fresh session, in the browser client's order: the transport's state, then the
    # callback it implies (onConnected after "connected", onBotReady after "ready").
    link_story = [
        (e["event"], e.get("state"))
        for e in sub.events()
        if e["event"] in ("disconnected", "transport-state-changed", "connected", "bot-ready")
    ]
    # The first session's bot-ready may still have been on its way when the subscriber came: the story
    # that counts begins with the reconnect's `disconnected`.
    link_story = link_story[link_story.index(("disconnected", None)) :]
    assert link_story[:6] == [
        ("disconnected", None),
        ("transport-state-changed", "connecting"),
        ("transport-state-changed", "connected"),
        ("connected", None),
        ("transport-state-changed", "ready"),
        ("bot-ready", None),
    ], link_story
    assert sub.events("bot-ready")[0]["about"]["library"] == "pipecat-ai"
    turn = [
        "turn-started",
        "user-started-speaking",
        "user-stopped-speaking",
        "user-transcript",
        "server-message",
        "bot-started-speaking",
        "bot-output",
        "bot-stopped-speaking",
    ]
    assert in_order(names, ["bot-ready", *turn]), names
    assert in_order(names, ["turn-started", "turn-ended", "user-transcript"]), names
    transcript = sub.events("user-transcript")[0]
    assert transcript["text"].startswith("I spoke for ") and transcript["final"] is True
    assert sub.events("bot-output")[0]["text"].startswith("You spoke for ")
    assert (
        sub.events("server-message")[0]["data"] == {"turn": 1}
        or "turn" in sub.events("server-message")[0]["data"]
    )
    assert sub.events("turn-started")[0]["source"] == "control"
    leds = [e["status"] for e in sub.events("led")]
    assert in_order(leds, ["offline", "ready", "listening", "thinking", "speaking", "ready"]), leds
    seqs = [e["seq"] for e in sub.events()]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(abs(e["ts"] - time.time()) < 120 for e in sub.events())

    print("voiceterm events:\n" + readable)
    lines = readable.splitlines()
    assert lines[0].split("  ", 1)[1].startswith("now: ready")
    said = [line.split("  ", 1)[1] for line in lines]
    assert any(s.startswith("you: I spoke for ") for s in said), said
    assert any(s.startswith("bot: You spoke for ") for s in said), said
    you = next(i for i, s in enumerate(said) if s.startswith("you: "))
    bot = next(i for i, s in enumerate(said) if s.startswith("bot: "))
    assert you < bot
    assert "turn started (control)" in said and "status: listening" in " ".join(said)
    assert sum(s.startswith("bot: ") for s in said) == 1  # bot-tts-text / bot-transcript do not repeat it


async def test_control_talk_sends_the_same_wire_traffic_as_the_gpio_button(
    conversation_bot: BotProcess, tmp_path: Path, monkeypatch
) -> None:
    cfg = make_config(tmp_path, conversation_bot, monkeypatch)
    bot = conversation_bot
    with trio.fail_after(40):
        async with running(cfg) as daemon, Client.open(cfg.events.socket) as sub:
            await sub.request("subscribe", events=["turn-started", "turn-ended", "button"])
            pin = daemon.panel.factory.pin(BUTTON)

            async def turn(start: Callable, stop: Callable) -> tuple[list[Any], float]:
                mark = bot.mark()
                await start()
                await trio.sleep(HOLD_S)
                await stop()
                done = await bot.wait_for_async(event_is("turn"), 5, since=mark)
                await wait_until(lambda: daemon.terminal.state().view.name == "ready", 10)
                messages = [
                    (e["type"], e["data"])
                    for e in bot.events()[mark:]
                    if e.get("event") == "message" and e.get("type")
                ]
                return messages, done["seconds"]

            async def press() -> None:
                pin.drive_low()  # pull-up wiring: pressed is low

            async def release() -> None:
                pin.drive_high()

            gpio_messages, gpio_seconds = await turn(press, release)
            ctl_messages, ctl_seconds = await turn(
                lambda: sub.request("talk", state="start"), lambda: sub.request("talk", state="stop")
            )

    print(
        f"\nGPIO turn: {gpio_messages} {gpio_seconds} s of audio; control turn: {ctl_messages} {ctl_seconds} s"
    )
    ptt = [("client-message", {"t": "push_to_talk", "d": {"state": s}}) for s in ("start", "stop")]
    assert gpio_messages == ctl_messages == ptt
    # The same audio: the turn held as long, plus the same silence tail (the button adds its 30 ms debounce).
    assert abs(gpio_seconds - ctl_seconds) <= 0.1
    assert gpio_seconds >= HOLD_S - 0.1
    sources = [(e["event"], e.get("source", e.get("pressed"))) for e in sub.events()]
    assert sources == [
        ("button", True),
        ("turn-started", "button"),
        ("button", False),
        ("turn-ended", "button"),
        ("turn-started", "control"),
        ("turn-ended", "control"),
    ]


STUCK_EVENTS = 2000  # volume-changed lines: more than a stuck socket holds, fewer than the queue of 4096


def _flood(path: str, until_dropped: Callable[[], bool], limit: int) -> int:
    """Volume commands as fast as the daemon answers them (each is a `volume-changed` event for every
    subscriber), until the stuck subscriber is dropped. Blocking, in a thread: the daemon's loop does the
    work, as it would for another process."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        f = s.makefile("rwb")
        n = 0
        while n < limit and not until_dropped():
            n += 1
            f.write(json.dumps({"cmd": "volume", "percent": 50 + n % 2}).encode() + b"\n")
            f.flush()
            reply = json.loads(f.readline())
            assert reply["ok"], reply
        return n


async def test_a_stuck_subscriber_is_dropped_and_never_delays_the_mic(
    conversation_bot: BotProcess, tmp_path: Path, monkeypatch
) -> None:
    """A subscriber that stops reading fills its socket, then its queue, and is dropped; while it is stuck
    the mic's chunks keep going to the bot (none is dropped), and the healthy subscriber gets everything.
    States and causes only: how fast either happens is the benchmark's to measure."""
    # A deep queue, so the subscriber stays stuck-but-not-yet-dropped while the mic is watched.
    cfg = make_config(tmp_path, conversation_bot, monkeypatch, queue=4096)
    with trio.fail_after(60):
        async with running(cfg) as daemon, Client.open(cfg.events.socket) as healthy:
            await healthy.request("subscribe", events=["volume-changed"])
            stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stuck.connect(cfg.events.socket)
            stuck.sendall(b'{"cmd": "subscribe"}\n')  # ... and never reads again
            await wait_until(lambda: daemon.events.subscribers == 2, 5)
            await healthy.request("talk", state="start")
            counters = daemon.link.counters
            dropped_before = counters.dropped_outgoing_audio_total

            # Stuck: 2000 events of about 80 bytes are more than its socket buffers hold (some 70 KiB), and
            # fewer than its queue does (4096 lines): the daemon's writer for it waits, the subscriber stays.
            first = await trio.to_thread.run_sync(_flood, cfg.events.socket, lambda: False, STUCK_EVENTS)
            assert daemon.events.counters["subscribers_dropped_total"] == 0 and daemon.events.subscribers == 2
            sent_while_stuck = counters.sent_audio_total
            await wait_until(
                lambda: counters.sent_audio_total >= sent_while_stuck + 25, 10, "mic audio while it is stuck"
            )
            assert daemon.events.subscribers == 2  # still stuck, not yet dropped: the mic went on regardless

            # Flooded on until its queue is full: dropped, and the audio goes on.
            more = await trio.to_thread.run_sync(
                _flood,
                cfg.events.socket,
                lambda: daemon.events.counters["subscribers_dropped_total"] > 0,
                20000,
            )
            commands = first + more
            sent_after_drop = counters.sent_audio_total
            await wait_until(
                lambda: counters.sent_audio_total > sent_after_drop, 5, "mic audio after the drop"
            )
            dropped = counters.dropped_outgoing_audio_total - dropped_before
            await healthy.request("talk", state="stop")
            await wait_until(
                lambda: len(healthy.events("volume-changed")) >= commands, 5, "the healthy subscriber"
            )

            # What the stuck client finds when it looks again: what the kernel held, then the end.
            stuck.setblocking(True)
            stuck.settimeout(5)
            got = b""
            while chunk := stuck.recv(65536):
                got += chunk
            stuck.close()
            hub = daemon.events.snapshot()

    lines_got = got.count(b"\n")
    print(f"\nstuck subscriber dropped after {commands} events; it had {lines_got} lines in its socket")
    assert hub["subscribers_dropped_total"] == 1 and hub["subscribers"] == 1
    assert lines_got < commands  # it was cut off, not served everything late
    assert dropped == 0  # no mic chunk was dropped
    assert len(healthy.events("volume-changed")) >= commands  # the others lose nothing
