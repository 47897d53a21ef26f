"""The link's trio shell in virtual time (trio's MockClock, autojump) over in-memory streams.

Every test takes `autojump_clock` (pytest-trio then runs it on MockClock(autojump_threshold=0): time jumps
ahead whenever every task waits). A `MemoryBot` (memnet.py) is the far end: trio-websocket's own server side on a memory stream pair,
scripted per test. Time is trio's virtual clock, so every timer (backoff, heartbeat, ready timeout,
connect timeout, goodbye grace) is checked to the exact instant, deterministically and in milliseconds of
real time. The real Pipecat bot is in test_link_bot.py; hostile networks on loopback in test_link_faults.py.
"""

from __future__ import annotations

import itertools
import logging

import pytest
import trio

from voiceterm.config_load import config_from_dict
from voiceterm.core.linkevents import ReceivedAudio, SessionEnded, SessionStarted
from voiceterm.core.linkstate import LinkState
from voiceterm.io.link import Link
from voiceterm.protocol.rtvi_events import BotReady, ServerError
from voiceterm_devkit.linkwatch import EventCollector, StatusRecorder, run_link

from .memnet import MemoryBot, audio_frame, bot_ready_for, parse_message, ready_bot, rtvi

URL = "ws://bot.test/ws"
R = LinkState


def make_link(bot: MemoryBot, *, bot_cfg=None, reconnect=None, heartbeat=None, **kw) -> Link:
    cfg = config_from_dict(
        {
            "bot": {"url": URL, "connect_timeout": 10.0, "ready_timeout": 5.0, **(bot_cfg or {})},
            "reconnect": {
                "initial_delay": 1.0,
                "multiplier": 2.0,
                "max_delay": 4.0,
                "jitter": 0.0,
                **(reconnect or {}),
            },
            "heartbeat": {"interval": 0, **(heartbeat or {})},
        },
        environ={},
    )
    return Link(cfg, open_stream=bot.open_stream, device_id="test-device", **kw)


def recorder(link: Link) -> StatusRecorder:
    return StatusRecorder(link, clock=trio.current_time)


def link_lines(caplog, level=logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "voiceterm.link" and r.levelno >= level]


async def test_backoff_waits_exactly_the_policy_delays_then_connects(autojump_clock, nursery):
    bot = MemoryBot()
    bot.refusing = True
    await nursery.start(bot.serve)
    link = make_link(bot)
    rec = recorder(link)
    t0 = trio.current_time()
    async with run_link(link):
        await rec.wait_for(lambda s: s.state is R.BACKING_OFF and s.attempt == 5, 60)
        bot.refusing = False
        ready = await rec.wait_state(R.READY, 60)
    connecting = [round(at - t0, 6) for at, state in rec.timeline() if state == "connecting"]
    assert connecting == [0, 1, 3, 7, 11, 15]  # delays 1, 2, 4, then the 4 s cap
    assert ready.at - t0 == 15
    assert ready.status.attempt == 5 and ready.status.last_error == "connection refused"
    assert link.counters.failures_total == 5 and bot.connects == 6


async def test_a_missing_pong_ends_the_session_at_interval_plus_timeout(autojump_clock, nursery, caplog):
    caplog.set_level(logging.INFO, "voiceterm.link")
    bot = MemoryBot()
    await nursery.start(bot.serve)
    link = make_link(bot, heartbeat={"interval": 10.0, "timeout": 5.0})
    rec = recorder(link)
    async with run_link(link):
        ready = await rec.wait_state(R.READY, 5)
        await trio.sleep(25)  # two pings answered
        assert link.counters.pings_sent_total == 2 and link.counters.pings_timed_out_total == 0
        bot.go_dark()
        dark_at = trio.current_time()
        lost = await rec.wait_state(R.BACKING_OFF, 60)
        bot.resume()
        back = await rec.wait_state(R.READY, 60, since=rec.mark())
    assert lost.at - ready.at == 35  # pings at 10 and 20 answered; the one at 30 not, dead at 30 + 5
    assert lost.at - dark_at == 10
    assert lost.status.last_error == "no pong within 5 s: connection presumed dead"
    assert link.counters.pings_timed_out_total == 1
    assert back.status.connects_total == 2
    assert any("no pong within 5 s" in line for line in link_lines(caplog))


async def test_ready_timeout_makes_the_session_ready_and_is_explained_once(autojump_clock, nursery, caplog):
    caplog.set_level(logging.INFO, "voiceterm.link")

    async def old_pipecat(request):  # never answers client-ready
        ws = await request.accept()
        while True:
            await ws.get_message()

    bot = MemoryBot(old_pipecat)
    await nursery.start(bot.serve)
    link = make_link(bot, bot_cfg={"ready_timeout": 2.5})
    rec = recorder(link)
    async with run_link(link):
        connected = await rec.wait_state(R.CONNECTED, 5)
        assert link.send_audio(b"\x00\x00" * 160, 16000)  # audio never waits for bot-ready
        ready = await rec.wait_state(R.READY, 5)
        link.reconnect_now()
        await rec.wait_for(lambda s: s.connects_total == 2 and s.state is R.READY, 10)
    assert ready.at - connected.at == 2.5
    assert link.counters.ready_timeouts_total == 2
    assert sum("older bots never send it" in line for line in link_lines(caplog)) == 1


async def test_connect_timeout_when_the_upgrade_is_never_answered(autojump_clock, nursery):
    async def mute(request):
        await trio.sleep_forever()

    bot = MemoryBot(mute)
    await nursery.start(bot.serve)
    link = make_link(bot, bot_cfg={"connect_timeout": 3.0})
    rec = recorder(link)
    t0 = trio.current_time()
    async with run_link(link):
        failed = await rec.wait_state(R.BACKING_OFF, 10)
    assert failed.at - t0 == 3.0
    assert failed.status.last_error == "no answer within 3 s (bot.connect_timeout)"


async def test_a_backend_that_is_down_fails_each_attempt_at_once(autojump_clock, nursery):
    # A proxy or load balancer whose backend is down accepts, reads the upgrade and hangs up.
    bot = MemoryBot()
    bot.hang_up_with = b""
    await nursery.start(bot.serve)
    link = make_link(bot, bot_cfg={"connect_timeout": 10.0})
    rec = recorder(link)
    async with run_link(link):
        await rec.wait_for(lambda s: s.state is R.BACKING_OFF and s.attempt == 3, 60)
    timeline = rec.timeline()
    attempts = [
        (end - start)
        for (start, a), (end, b) in itertools.pairwise(timeline)
        if a == "connecting" and b == "backing-off"
    ]
    assert attempts == [0, 0, 0]  # not 10 s each: the attempt ends when the connection does
    assert "closed before the upgrade was answered" in link.status.last_error
    assert not link.status.unfixable


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"HTTP/1.1 101 Switching", "connection closed before the upgrade was answered"),  # half a head
        (
            b"HTTP/1.1 502 Bad Gateway\r\n\r\n<html>the backend is down",
            "refused the WebSocket upgrade (HTTP 502)",
        ),
    ],
)
async def test_an_upgrade_answer_cut_short_ends_the_attempt_at_once(autojump_clock, nursery, answer, words):
    # trio-websocket would wait for the rest of these (a body read until the close, never finished).
    bot = MemoryBot()
    bot.hang_up_with = answer
    await nursery.start(bot.serve)
    link = make_link(bot)
    rec = recorder(link)
    t0 = trio.current_time()
    async with run_link(link):
        failed = await rec.wait_state(R.BACKING_OFF, 20)
    assert failed.at == t0
    assert words in failed.status.last_error and not failed.status.unfixable


async def test_a_message_over_the_limit_closes_with_1009_and_the_link_reconnects(autojump_clock, nursery):
    async def oversize_once(request):
        ws = await request.accept()
        await ws.get_message()
        if len(bot.requests) == 1:
            await ws.send_message(audio_frame(8000))  # over the link's 4096-byte limit
        else:
            await ws.send_message(rtvi("bot-ready", {"version": "2.2.0"}))
        while True:
            await ws.get_message()

    bot = MemoryBot(oversize_once)
    await nursery.start(bot.serve)
    link = make_link(bot, bot_cfg={"max_message_bytes": 4096})
    rec = recorder(link)
    async with run_link(link):
        lost = await rec.wait_state(R.BACKING_OFF, 5)
        back = await rec.wait_state(R.READY, 5, since=rec.mark())
    assert "4096-byte limit" in lost.status.last_error and "1009" in lost.status.last_error
    assert not lost.status.unfixable
    assert back.at - lost.at == 1.0 and back.status.connects_total == 2


async def test_close_4003_is_unfixable_and_retried_after_the_longest_delay(autojump_clock, nursery, caplog):
    caplog.set_level(logging.INFO, "voiceterm.link")

    async def reject(request):
        ws = await request.accept()
        await ws.aclose(code=4003)

    bot = MemoryBot(reject)
    await nursery.start(bot.serve)
    link = make_link(bot, reconnect={"initial_delay": 0.1, "max_delay": 8.0})
    rec = recorder(link)
    async with run_link(link):
        first = await rec.wait_state(R.BACKING_OFF, 5)
        retry = await rec.wait_state(R.CONNECTING, 20, since=rec.mark())
        second = await rec.wait_state(R.BACKING_OFF, 20, since=rec.mark())
    assert first.status.unfixable and second.status.unfixable
    assert "4003: token or Origin not accepted" in first.status.last_error
    assert retry.at - first.at == 8.0
    lines = [line for line in link_lines(caplog) if "4003" in line]
    assert len(lines) == 1 and "unfixable=yes" in lines[0]  # the same failure again is not logged


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("", "bot refused the connection (HTTP 401); it may need bot.token or another bot.origin"),
        ("tok-9f8e7d6c5b4a", "bot rejected the token (HTTP 401)"),
    ],
)
async def test_http_401_on_the_upgrade_is_unfixable_and_never_shows_the_token(
    autojump_clock, nursery, caplog, token, words
):
    caplog.set_level(logging.DEBUG)

    async def refuse(request):
        await request.reject(401, body=b"no\nforged line")

    bot = MemoryBot(refuse)
    await nursery.start(bot.serve)
    link = make_link(bot, bot_cfg={"token": token})
    rec = recorder(link)
    async with run_link(link):
        failed = await rec.wait_state(R.BACKING_OFF, 5)
    assert failed.status.last_error == words and failed.status.unfixable
    assert failed.status.retry_in == 4.0
    if token:
        assert bot.requests[0].path.endswith(f"token={token}")  # the token does go to the bot
        assert token not in caplog.text and token not in str(link.snapshot())


async def test_reconnect_now_starts_a_new_session_without_a_failure(autojump_clock, nursery):
    bot = MemoryBot()
    await nursery.start(bot.serve)
    link = make_link(bot)
    rec = recorder(link)
    events = EventCollector(link)
    async with run_link(link, collect=events):
        await rec.wait_state(R.READY, 5)
        mark = rec.mark()
        link.reconnect_now()
        back = await rec.wait_for(lambda s: s.state is R.READY and s.connects_total == 2, 5)
        await events.wait_for(lambda c: c.sessions_started() == [1, 2], 5)
    assert "backing-off" not in rec.states(mark)
    assert back.at - rec.history[mark - 1].at == 0  # no delay: straight back in
    assert link.counters.failures_total == 0
    assert events.sessions_ended()[0] == SessionEnded(session=1, reason="reconnect requested", failure=False)


async def test_close_says_goodbye_and_returns_within_the_grace(autojump_clock, nursery):
    said: list[str] = []

    async def listener(request):
        ws = await request.accept()
        await bot_ready_for(ws)
        while True:
            said.append(parse_message(await ws.get_message())["type"])

    bot = MemoryBot(listener)
    await nursery.start(bot.serve)
    link = make_link(bot)
    rec = recorder(link)
    nursery.start_soon(link.run)
    await rec.wait_state(R.READY, 5)
    started = trio.current_time()
    await link.close()
    assert trio.current_time() - started < 0.4
    assert said == ["disconnect-bot"]
    assert link.status.state is R.OFFLINE
    assert not link.send_audio(b"\x00\x00", 16000)


async def test_ending_a_session_that_cancellation_is_tearing_down_starts_nothing_in_it(
    autojump_clock, nursery
):
    # The daemon's shutdown: everything around the link is cancelled, and another task asks the session to
    # end (close, reconnect) while the link tears it down: its nursery already closed, the machine still
    # READY. The stream's aclose() is that moment, deterministically; nothing may be started in the dead
    # session (trio: "Nursery is closed to new arrivals").
    bot = MemoryBot()
    await nursery.start(bot.serve)
    asked: list[str] = []

    async def opening(host: str, port: int):
        stream = await bot.open_stream(host, port)
        plain_aclose = stream.aclose

        async def aclose() -> None:
            link.reconnect_now()  # synchronous: decided and performed at this very moment
            asked.append(link.status.state.value)
            await plain_aclose()

        stream.aclose = aclose
        return stream

    link = Link(make_link(bot).config, open_stream=opening, device_id="test-device")
    rec = recorder(link)
    async with trio.open_nursery() as around:
        around.start_soon(link.run)
        await rec.wait_state(R.READY, 5)
        around.cancel_scope.cancel()
    assert asked == ["ready"]  # the machine still thought the session alive when it was asked
    assert link.status.state is R.OFFLINE


async def test_close_on_a_black_hole_returns_within_the_grace(autojump_clock, nursery):
    bot = MemoryBot()
    await nursery.start(bot.serve)
    link = make_link(bot)
    rec = recorder(link)
    nursery.start_soon(link.run)
    await rec.wait_state(R.READY, 5)
    bot.go_dark()
    started = trio.current_time()
    await link.close()
    assert trio.current_time() - started <= 0.4  # the goodbye's grace at most
    assert link.status.state is R.OFFLINE


async def test_close_while_backing_off_or_connecting(autojump_clock, nursery):
    bot = MemoryBot()
    bot.refusing = True
    await nursery.start(bot.serve)
    link = make_link(bot)
    rec = recorder(link)
    nursery.start_soon(link.run)
    await rec.wait_state(R.BACKING_OFF, 5)
    started = trio.current_time()
    await link.close()
    assert trio.current_time() == started and link.status.state is R.OFFLINE


async def test_a_bot_that_drops_every_young_session_backs_off_and_logs_it_once(
    autojump_clock, nursery, caplog
):
    caplog.set_level(logging.INFO, "voiceterm.link")

    async def flapper(request):
        ws = await request.accept()
        await bot_ready_for(ws)
        await trio.sleep(1.0)
        await ws.aclose(code=1000)

    bot = MemoryBot(flapper)
    await nursery.start(bot.serve)
    link = make_link(bot, reconnect={"max_delay": 8.0})
    rec = recorder(link)
    async with run_link(link):
        await rec.wait_for(lambda s: s.connects_total == 5 and s.state is R.BACKING_OFF, 60)
    delays = [seen.status.retry_in for seen in rec.history if seen.status.state is R.BACKING_OFF]
    assert delays == [1, 2, 4, 8, 8]  # each young session counts as a failed attempt
    lines = link_lines(caplog)
    assert sum("state=ready" in line for line in lines) == 1, lines
    assert sum("bot ended the session" in line for line in lines) == 1, lines


async def test_a_fatal_rtvi_error_ends_the_session_and_reconnects_with_backoff(
    autojump_clock, nursery, caplog
):
    caplog.set_level(logging.INFO, "voiceterm.link")

    async def failing(request):
        ws = await request.accept()
        await bot_ready_for(ws)
        await ws.send_message(rtvi("error", {"error": "quota exceeded\nstate=ready forged", "fatal": False}))
        if len(bot.requests) == 1:
            await ws.send_message(rtvi("error", {"error": "pipeline stopped", "fatal": True}))
        while True:
            await ws.get_message()

    bot = MemoryBot(failing)
    await nursery.start(bot.serve)
    link = make_link(bot)
    rec = recorder(link)
    events = EventCollector(link)
    async with run_link(link, collect=events):
        lost = await rec.wait_state(R.BACKING_OFF, 5)
        back = await rec.wait_state(R.READY, 5, since=rec.mark())
        await events.wait_for(lambda c: len(c.of_type(ServerError)) == 3, 5)
    assert lost.status.last_error == "bot reported a fatal error: pipeline stopped"
    assert back.at - lost.at == 1.0
    assert events.sessions_ended()[0].failure
    lines = link_lines(caplog)
    assert all("\n" not in line for line in lines)
    assert any('bot_error="quota exceeded\\nstate=ready forged"' in line for line in lines), lines


async def test_an_other_rtvi_major_version_is_warned_once_and_the_session_goes_on(
    autojump_clock, nursery, caplog
):
    caplog.set_level(logging.INFO, "voiceterm.link")

    async def future_bot(request):
        ws = await request.accept()
        await bot_ready_for(ws, version="3.1.0")
        while True:
            await ws.get_message()

    bot = MemoryBot(future_bot)
    await nursery.start(bot.serve)
    link = make_link(bot)
    rec = recorder(link)
    async with run_link(link):
        await rec.wait_state(R.READY, 5)
        link.reconnect_now()
        await rec.wait_for(lambda s: s.state is R.READY and s.connects_total == 2, 5)
    warnings = [line for line in link_lines(caplog, logging.WARNING) if "bot_rtvi_version" in line]
    assert len(warnings) == 1 and "bot_rtvi_version=3.1.0 ours=2.2.0" in warnings[0]


async def test_a_close_reason_with_a_newline_stays_on_one_line(autojump_clock, nursery, caplog):
    caplog.set_level(logging.INFO, "voiceterm.link")

    async def forger(request):
        ws = await request.accept()
        await ws.aclose(code=4999, reason="bye\nvoiceterm.link: state=ready token=abc")

    bot = MemoryBot(forger)
    await nursery.start(bot.serve)
    link = make_link(bot)
    rec = recorder(link)
    async with run_link(link):
        failed = await rec.wait_state(R.BACKING_OFF, 5)
    assert failed.status.last_error == (
        "bot closed the connection (close code 4999: bye\\nvoiceterm.link: state=ready token=<redacted>)"
    )
    lines = link_lines(caplog)
    assert lines and all("\n" not in line and "abc" not in line for line in lines)


async def test_garbage_frames_are_counted_logged_once_and_the_session_goes_on(
    autojump_clock, nursery, caplog
):
    caplog.set_level(logging.INFO, "voiceterm.link")

    async def garbage(request):
        ws = await request.accept()
        await bot_ready_for(ws)
        await ws.send_message(b"\xff\xff\xff\xff")  # not protobuf
        await ws.send_message("a text frame\nin a binary protocol")
        await ws.send_message(audio_frame(1920))
        while True:
            await ws.get_message()

    bot = MemoryBot(garbage)
    await nursery.start(bot.serve)
    link = make_link(bot)
    events = EventCollector(link)
    async with run_link(link, collect=events):
        await events.wait_for(lambda c: c.audio_bytes.get(1, 0) == 1920, 5)
        assert link.counters.garbage_frames_total == 2
        assert link.status.state is R.READY and link.counters.failures_total == 0
    assert len([line for line in link_lines(caplog) if "undecodable" in line]) == 1


async def test_a_full_events_channel_drops_audio_and_keeps_every_state_change_in_order(
    autojump_clock, nursery
):
    async def chatty(request):
        ws = await request.accept()
        await bot_ready_for(ws)
        for _ in range(40):
            await ws.send_message(audio_frame(1920))
        await ws.send_message(rtvi("bot-started-speaking"))
        await ws.send_message(audio_frame(1920))
        while True:
            await ws.get_message()

    bot = MemoryBot(chatty)
    await nursery.start(bot.serve)
    link = make_link(bot, events_capacity=4)
    rec = recorder(link)
    async with run_link(link) as inner:
        await rec.wait_state(R.READY, 5)
        await trio.sleep(1)  # nobody reads link.events meanwhile
        assert link.counters.received_audio_total == 41
        assert link.status.state is R.READY
        dropped = link.counters.dropped_incoming_total
        events = EventCollector(link)
        inner.start_soon(events.collect)
        await events.wait_for(lambda c: c.of_type(BotReady) and len(c.events) >= 3, 5)
    kinds = [type(e).__name__ for _, e in events.events[:3]]
    assert kinds == [
        "SessionStarted",
        "BotReady",
        "BotStartedSpeaking",
    ]  # what may not be dropped came, in order
    assert dropped == 41 - 2  # two audio chunks fit beside SessionStarted and BotReady
    assert link.counters.dropped_incoming_audio_bytes_total == dropped * 1920
    assert link.snapshot()["incoming_backlog"] == 0


class InlineReader:
    """The app's way of reading the link: a handler for audio the link hands over itself (Link.handle_audio)
    and a reader of `events` whose handling never awaits; both write to one list, in the order handled."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.handled: list[object] = []
        self.inline: list[int] = []  # the sizes of the chunks the link handed over itself
        link.handle_audio(self._inline)

    def _inline(self, chunk) -> None:
        self.inline.append(len(chunk.pcm))
        self._handle(chunk)

    def _handle(self, event) -> None:
        self.handled.append(len(event.pcm) if isinstance(event, ReceivedAudio) else type(event).__name__)

    async def read(self) -> None:
        async for event in self.link.events:
            self._handle(event)

    async def wait_for(self, n: int) -> list[object]:
        with trio.fail_after(10):
            while len(self.handled) < n:
                await trio.sleep(0.01)
        return list(self.handled)  # before the link's close adds SessionEnded


async def test_audio_that_finds_the_reader_idle_is_handled_by_the_link_itself_in_order(
    autojump_clock, nursery
):
    async def talker(request):
        ws = await request.accept()
        await bot_ready_for(ws)
        await trio.sleep(1)  # the reader has handled everything and waits
        await ws.send_message(audio_frame(960))
        await trio.sleep(1)
        await ws.send_message(rtvi("bot-started-speaking"))
        await ws.send_message(audio_frame(1920))
        await ws.send_message(audio_frame(2880))
        await ws.send_message(rtvi("bot-stopped-speaking"))
        await trio.sleep(1)
        await ws.send_message(audio_frame(3840))
        while True:
            await ws.get_message()

    bot = MemoryBot(talker)
    await nursery.start(bot.serve)
    link = make_link(bot)
    reader = InlineReader(link)
    async with run_link(link) as inner:
        inner.start_soon(reader.read)
        handled = await reader.wait_for(8)
    assert handled == [
        "SessionStarted",
        "BotReady",
        960,
        "BotStartedSpeaking",
        1920,
        2880,
        "BotStoppedSpeaking",
        3840,
    ]
    # The chunks that came to an idle reader went no other way; the ones right behind an event may have.
    assert 960 in reader.inline and 3840 in reader.inline
    assert link.counters.dropped_incoming_total == 0


async def test_audio_behind_an_event_the_reader_has_not_taken_goes_through_the_channel(
    autojump_clock, nursery
):
    async def talker(request):
        ws = await request.accept()
        await bot_ready_for(ws)
        await ws.send_message(rtvi("bot-started-speaking"))
        await ws.send_message(audio_frame(1920))
        while True:
            await ws.get_message()

    bot = MemoryBot(talker)
    await nursery.start(bot.serve)
    link = make_link(bot)
    reader = InlineReader(link)
    async with run_link(link) as inner:
        with trio.fail_after(10):
            while link.counters.received_audio_total < 1:
                await trio.sleep(0.01)
        inner.start_soon(reader.read)  # only now: the events wait in the channel, the audio behind them
        handled = await reader.wait_for(4)
    assert handled == ["SessionStarted", "BotReady", "BotStartedSpeaking", 1920]
    assert reader.inline == []


async def test_mic_audio_and_messages_reach_the_bot_messages_first(autojump_clock, nursery):
    got: list[str] = []

    async def recorder_bot(request):
        ws = await request.accept()
        await bot_ready_for(ws)
        while True:
            data = await ws.get_message()
            got.append("audio" if data[:1] == b"\x12" else parse_message(data)["type"])

    bot = MemoryBot(recorder_bot)
    await nursery.start(bot.serve)
    link = make_link(bot)
    rec = recorder(link)
    async with run_link(link):
        await rec.wait_state(R.READY, 5)
        await trio.sleep(0.1)
        for _ in range(3):
            assert link.send_audio(b"\x00\x00" * 320, 16000, captured_at=trio.current_time())
        assert link.send_message({"label": "rtvi-ai", "type": "client-message", "id": "1", "data": {}})
        await trio.sleep(1)
    assert got[:4] == ["client-message", "audio", "audio", "audio"]
    assert link.counters.sent_audio_total == 3 and link.counters.sent_messages_total == 1
    assert link.latency["capture_to_send"].count == 3


async def test_origin_and_extra_headers_go_with_the_upgrade(autojump_clock, nursery):
    bot = MemoryBot(ready_bot)
    await nursery.start(bot.serve)
    link = make_link(
        bot, bot_cfg={"origin": "https://kiosk.example", "headers": {"X-Api-Key": "hk-1", "X-Unit": "lobby"}}
    )
    rec = recorder(link)
    async with run_link(link):
        await rec.wait_state(R.READY, 5)
    headers = {k.decode().lower(): v.decode() for k, v in bot.requests[0].headers}
    assert headers["origin"] == "https://kiosk.example"
    assert headers["x-api-key"] == "hk-1" and headers["x-unit"] == "lobby"
    assert bot.requests[0].path == "/ws"


async def test_a_spent_budget_fails_until_a_wake(autojump_clock, nursery):
    bot = MemoryBot()
    bot.refusing = True
    await nursery.start(bot.serve)
    link = make_link(bot, reconnect={"max_attempts": 2})
    rec = recorder(link)
    async with run_link(link):
        failed = await rec.wait_state(R.FAILED, 10)
        mark = rec.mark()
        await trio.sleep(3600)  # FAILED waits for a wake-up, however long
        assert rec.states(mark) == [] and bot.connects == 2
        bot.refusing = False
        link.wake()
        await rec.wait_state(R.READY, 5, since=mark)
    assert failed.status.attempt == 2 and failed.status.last_error == "connection refused"
    assert rec.states(mark)[:1] == ["connecting"]


async def test_session_events_come_in_order_with_their_stamps(autojump_clock, nursery):
    bot = MemoryBot()
    await nursery.start(bot.serve)

    async def speaker(request):
        ws = await request.accept()
        await bot_ready_for(ws)
        await ws.send_message(audio_frame(1920))
        await ws.aclose()

    bot.handler = speaker
    link = make_link(bot)
    events = EventCollector(link)
    async with run_link(link, collect=events):
        await events.wait_for(lambda c: c.sessions_ended(), 5)
    first = events.events[0][1]
    assert first == SessionStarted(session=1, url=URL)
    assert isinstance(events.audio[1][0], ReceivedAudio)
    assert events.sessions_ended()[0].reason == "bot ended the session (close code 1000)"


async def test_an_unusable_ca_file_is_reported_not_raised(autojump_clock, nursery, tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("this is not a certificate\n")
    bot = MemoryBot()
    await nursery.start(bot.serve)
    link = make_link(bot, bot_cfg={"url": "wss://bot.test/ws", "ca_file": str(bad)})
    rec = recorder(link)
    async with run_link(link):
        failed = await rec.wait_state(R.BACKING_OFF, 5)
    assert failed.status.unfixable and bot.connects == 0
    assert failed.status.last_error.startswith(f"cannot load bot.ca_file {bad}")


def test_a_link_that_never_ran_drops_and_counts():
    bot = MemoryBot()
    link = make_link(bot)
    assert not link.send_audio(b"\x00\x00", 16000)
    assert not link.send_message({"label": "rtvi-ai", "type": "client-message", "id": "1", "data": {}})
    assert link.counters.dropped_outgoing_audio_total == 1
    assert link.counters.dropped_messages_total == 1
    assert link.snapshot()["state"] == "offline"
