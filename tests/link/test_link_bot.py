"""The link against the real Pipecat echo bot on loopback: handshake, echo, kill -9 and restart, a
black-holed path, a slow consumer, single-use tokens from a start endpoint, Twilio, barge-in.

Recovery and detection times are printed (run with -s to see them) and asserted against the configured
backoff and heartbeat plus a margin.
"""

from __future__ import annotations

import json
import logging
import math
import time

import numpy as np
import pytest
import trio
import trio_websocket

from voiceterm.config import config_from_dict
from voiceterm.core.linkstate import LinkState
from voiceterm.io.link import Link, SessionStarted
from voiceterm.protocol import rtvi
from voiceterm.protocol.events import AudioChunk, Interruption
from voiceterm_devkit.bot import BotProcess, event_is
from voiceterm_devkit.linkwatch import EventCollector, StatusRecorder, run_link
from voiceterm_devkit.netfaults import FaultProxy, TokenStore
from voiceterm_devkit.start_server import StartEndpointServer

pytestmark = pytest.mark.bot

MARGIN = 0.5  # seconds of slack on loopback for scheduling, bot-side latency and CI noise
# The bot holds back the last ~80 ms of an echo (its resampler's delay plus a part-filled 40 ms output
# chunk) until more audio comes; expect the echo short by up to this much.
ECHO_TAIL_S = 0.15


def echoed_at_least(sent: int, in_rate: int = 16000, out_rate: int = 24000, tail: float = ECHO_TAIL_S) -> int:
    return int((sent / 2 / in_rate - tail) * out_rate * 2)


def make_config(url: str = "", *, bot=None, reconnect=None, heartbeat=None):
    return config_from_dict(
        {
            "bot": {
                "url": url or "ws://127.0.0.1:9",
                "connect_timeout": 2.0,
                "device_id": "test-device",
                **(bot or {}),
            },
            "reconnect": {
                "initial_delay": 0.1,
                "multiplier": 1.5,
                "max_delay": 0.5,
                "jitter": 0.2,
                **(reconnect or {}),
            },
            "heartbeat": {"interval": 0.5, "timeout": 0.5, **(heartbeat or {})},
        }
    )


def tone(seconds: float, rate: int, freq: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * math.pi * freq * t) * 8000).astype("<i2").tobytes()


async def stream(link: Link, seconds: float, *, rate: int = 16000, chunk_ms: int = 20) -> int:
    """Feed a 440 Hz tone in real time; returns the bytes the link accepted."""
    pcm = tone(seconds, rate)
    step = rate * chunk_ms // 1000 * 2
    accepted = 0
    next_at = trio.current_time()
    for offset in range(0, len(pcm), step):
        if link.send_audio(pcm[offset : offset + step], rate):
            accepted += len(pcm[offset : offset + step])
        next_at += chunk_ms / 1000
        await trio.sleep_until(next_at)
    return accepted


async def stream_forever(link: Link, rate: int = 16000) -> None:
    while True:
        await stream(link, 1.0, rate=rate)


def dominant_frequency(chunks: list[AudioChunk]) -> float:
    pcm = np.frombuffer(b"".join(c.pcm for c in chunks), dtype="<i2").astype(np.float64)
    rate = chunks[0].sample_rate
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))])


def link_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "voiceterm.link" and r.levelno >= logging.INFO]


async def test_handshake_bot_ready_and_audio_echo(shared_bot: BotProcess):
    bot = shared_bot
    mark = bot.mark()
    link = Link(make_config(bot.url))
    recorder = StatusRecorder(link)
    collector = EventCollector(link)
    with trio.fail_after(15):
        async with run_link(link, collect=collector):
            connected = await recorder.wait_state(LinkState.CONNECTED, 5)
            ready = await recorder.wait_state(LinkState.READY, 5)
            hello = await bot.wait_for_async(event_is("message", type="client-ready"), 5, since=mark)
            sent = await stream(link, 0.6)
            await collector.wait_for(lambda c: c.audio_bytes.get(1, 0) >= echoed_at_least(sent), 5)
            assert link.send_message(rtvi.push_to_talk("start"))
            ptt = await bot.wait_for_async(event_is("message", type="client-message"), 5, since=mark)
            await bot.wait_for_async(
                lambda e: e.get("event") == "audio_in" and e["total"] >= sent, 5, since=mark
            )

    print(f"\nhandshake: connected->ready {1000 * (ready.at - connected.at):.1f} ms")
    assert hello["data"]["about"]["library"] == "voiceterm"
    assert hello["data"]["about"]["platform_details"]["device_id"] == "test-device"
    assert ptt["data"] == {"t": "push_to_talk", "d": {"state": "start"}}
    assert collector.sessions_started() == [1]
    assert any(isinstance(e, rtvi.BotReady) for e in collector.of_type(rtvi.RTVIEvent))
    echoed = collector.audio[1]
    assert {c.sample_rate for c in echoed} == {24000}
    assert abs(dominant_frequency(echoed) - 440.0) < 10.0  # our tone, resampled, came back
    assert link.counters.sent_audio_bytes_total == sent
    assert link.counters.garbage_frames_total == 0
    assert link.counters.dropped_incoming_total == 0
    assert collector.sessions_ended()[-1].failure is False  # closed on purpose
    await bot.wait_for_async(event_is("disconnect_bot"), 5, since=mark)  # the goodbye reached the bot


async def test_kill_and_restart_mid_stream(fresh_bot: BotProcess, caplog):
    caplog.set_level(logging.INFO, "voiceterm.link")
    bot = fresh_bot
    cfg = make_config(bot.url, heartbeat={"interval": 0})
    link = Link(cfg)
    recorder = StatusRecorder(link)
    collector = EventCollector(link, keep_audio=False)
    cycles = 3
    recoveries, startups, failures = [], [], []
    with trio.fail_after(40):
        async with run_link(link, collect=collector) as nursery:
            nursery.start_soon(stream_forever, link)
            await recorder.wait_state(LinkState.READY, 5)
            lines_before = len(link_lines(caplog))
            for cycle in range(cycles):
                session = link.status.connects_total
                # Echo flows in this session (the bot restarted: a brand-new session each time).
                await collector.wait_for(lambda c, s=session: c.audio_bytes.get(s, 0) >= 19200, 5)
                mark = recorder.mark()
                failed_before = link.counters.failures_total
                bot.kill()
                lost = await recorder.wait_state(LinkState.BACKING_OFF, 3, since=mark)
                assert lost.status.last_error == "connection lost (no close frame)"
                startups.append(await trio.to_thread.run_sync(bot.restart))
                listening_at = bot.listening_event()["t"]
                ready = await recorder.wait_state(LinkState.READY, 5, since=mark)
                recoveries.append(ready.at - listening_at)
                failures.append(link.counters.failures_total - failed_before)
                assert ready.status.connects_total == session + 1, f"cycle {cycle}"
            await collector.wait_for(lambda c: c.audio_bytes.get(cycles + 1, 0) >= 19200, 5)
            lines = link_lines(caplog)[lines_before:]

    print(
        "\nkill/restart: bot startup "
        + ", ".join(f"{s:.2f}" for s in startups)
        + " s; link back after the bot listened: "
        + ", ".join(f"{r:.3f}" for r in recoveries)
        + f" s (max backoff {cfg.reconnect.max_delay} s); failed attempts per outage {failures}; "
        + f"{len(lines)} log lines"
    )
    for recovery in recoveries:
        assert recovery <= cfg.reconnect.max_delay + MARGIN
    assert collector.sessions_started() == list(range(1, cycles + 2))
    # Each outage logs: the loss, the first refused connect, the recovery. Not one line per attempt.
    text = [r.getMessage() for r in lines]
    assert sum("connection lost" in t for t in text) == cycles
    assert sum("connection refused" in t for t in text) == cycles
    assert sum("state=ready" in t for t in text) == cycles
    assert len(lines) == 3 * cycles, text
    assert sum(failures) >= len([t for t in text if "state=backing-off" in t])
    assert all("down=" in t for t in text if "state=ready" in t)


async def test_black_holed_path_is_detected_and_the_link_recovers(shared_bot: BotProcess):
    async with trio.open_nursery() as nursery:
        proxy = FaultProxy(shared_bot.port)
        await nursery.start(proxy.run)
        cfg = make_config(proxy.url, bot={"connect_timeout": 1.0})
        hb = cfg.heartbeat
        link = Link(cfg)
        recorder = StatusRecorder(link)
        collector = EventCollector(link, keep_audio=False)
        with trio.fail_after(20):
            async with run_link(link, collect=collector) as inner:
                inner.start_soon(stream_forever, link)
                await recorder.wait_state(LinkState.READY, 5)
                await collector.wait_for(lambda c: c.audio_bytes.get(1, 0) >= 9600, 5)
                mark = recorder.mark()
                blackholed_at = time.monotonic()
                proxy.blackhole()
                lost = await recorder.wait_state(LinkState.BACKING_OFF, 5, since=mark)
                detection = lost.at - blackholed_at
                # While the path stays dark, attempts reach the proxy but the handshake never answers.
                await recorder.wait_for(
                    lambda s: s.state is LinkState.BACKING_OFF and "no answer within" in (s.last_error or ""),
                    5,
                    since=mark,
                )
                mark = recorder.mark()
                resumed_at = time.monotonic()
                proxy.resume()
                ready = await recorder.wait_state(LinkState.READY, 5, since=mark)
                recovery = ready.at - resumed_at
                session = ready.status.connects_total
                await collector.wait_for(lambda c: c.audio_bytes.get(session, 0) >= 9600, 5)
        nursery.cancel_scope.cancel()

    print(
        f"\nblack hole: detected after {detection:.3f} s (interval {hb.interval} + timeout {hb.timeout}); "
        f"link back {recovery:.3f} s after the path resumed"
    )
    assert "no pong within 0.5 s" in lost.status.last_error
    assert detection <= hb.interval + hb.timeout + 0.25
    assert link.counters.pings_timed_out_total == 1
    assert recovery <= cfg.bot.connect_timeout + cfg.reconnect.max_delay + MARGIN
    assert proxy.counters.blackholed_bytes > 0


async def test_a_full_events_channel_drops_audio_counts_it_and_keeps_going(shared_bot: BotProcess):
    link = Link(make_config(shared_bot.url), events_capacity=4)
    recorder = StatusRecorder(link)
    collector = EventCollector(link, keep_audio=False)
    with trio.fail_after(15):
        async with run_link(link) as nursery:
            await recorder.wait_state(LinkState.READY, 5)
            await stream(link, 1.0)  # nobody reads link.events meanwhile
            assert link.counters.dropped_incoming_total >= 10
            assert link.status.state is LinkState.READY
            assert link.counters.pings_timed_out_total == 0  # the reader never stalled
            nursery.start_soon(collector.collect)
            dropped = link.counters.dropped_incoming_total
            received = link.counters.received_audio_total
            await stream(link, 0.4)
            await collector.wait_for(lambda c: c.audio_bytes.get(1, 0) >= 4 * 1920 + 9600, 5)
    kinds = [type(e).__name__ for _, e in collector.events[:2]]
    assert kinds == ["SessionStarted", "BotReady"]  # what the link could not drop came first, in order
    assert link.counters.received_audio_total > received
    assert link.counters.dropped_incoming_total - dropped < 5
    assert link.counters.failures_total == 0


async def test_start_endpoint_single_use_tokens(shared_bot: BotProcess, caplog):
    caplog.set_level(logging.DEBUG)
    api_key = "ak-5e3c1b9d"
    tokens = TokenStore()
    async with trio.open_nursery() as nursery:
        gate = FaultProxy(shared_bot.port, tokens=tokens)
        await nursery.start(gate.run)
        endpoint = StartEndpointServer(ws_url=gate.url + "/ws-client", tokens=tokens, api_key=api_key)
        await nursery.start(endpoint.run)
        cfg = make_config(
            bot={
                "endpoint": endpoint.url,
                "token": api_key,
                "endpoint_body": {"transport": "websocket", "body": {"room": "lobby"}},
                "endpoint_headers": {"X-Device-Model": "pi-zero-2"},
            }
        )
        link = Link(cfg)
        recorder = StatusRecorder(link)
        with trio.fail_after(20):
            async with run_link(link):
                await recorder.wait_state(LinkState.READY, 5)
                link.reconnect_now()  # on purpose
                await recorder.wait_for(lambda s: s.state.is_up and s.connects_total == 2, 5)
                await recorder.wait_state(LinkState.READY, 5, since=recorder.mark())
                mark = recorder.mark()
                gate.drop_all()  # and by accident
                await recorder.wait_state(LinkState.BACKING_OFF, 5, since=mark)
                await recorder.wait_state(LinkState.READY, 5, since=mark)
                snapshot = link.snapshot()
            link_logs = caplog.text  # before the replay below, whose client logs its own URL

            # A token that was used once is refused the second time.
            first = next(iter(sorted(tokens.used)))
            with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
                async with trio_websocket.open_websocket_url(f"{gate.url}/ws-client?token={first}"):
                    pass
            assert rejected.value.status_code == 403
        nursery.cancel_scope.cancel()

    assert [c.status for c in endpoint.calls] == [200, 200, 200]  # a fresh call for every session
    assert tokens.accepted == 3 and len(tokens.used) == 3
    call = endpoint.calls[0]
    assert call.body == {"transport": "websocket", "body": {"room": "lobby"}}
    assert call.headers["authorization"] == f"Bearer {api_key}"
    assert call.headers["x-device-model"] == "pi-zero-2"
    assert "token=<redacted>" in snapshot["url"]
    everything = link_logs + json.dumps(snapshot)
    for secret in (*tokens.issued, api_key):
        assert secret not in everything


async def test_start_endpoint_with_ws_url_and_no_token(shared_bot: BotProcess):
    async with trio.open_nursery() as nursery:
        endpoint = StartEndpointServer(ws_url=shared_bot.url, url_key="ws_url", issue_tokens=False)
        await nursery.start(endpoint.run)
        link = Link(make_config(bot={"endpoint": endpoint.url}))
        recorder = StatusRecorder(link)
        with trio.fail_after(10):
            async with run_link(link):
                await recorder.wait_state(LinkState.READY, 5)
                assert link.snapshot()["url"] == shared_bot.url
        nursery.cancel_scope.cancel()
    assert "authorization" not in endpoint.calls[0].headers  # no bot.token: no Bearer
    assert endpoint.calls[0].body == {"transport": "websocket"}


async def test_start_endpoint_rejecting_the_key_is_unfixable(shared_bot: BotProcess, caplog):
    caplog.set_level(logging.DEBUG)
    async with trio.open_nursery() as nursery:
        endpoint = StartEndpointServer(ws_url=shared_bot.url, api_key="the-right-key")
        await nursery.start(endpoint.run)
        link = Link(make_config(bot={"endpoint": endpoint.url, "token": "a-wrong-key-123"}))
        recorder = StatusRecorder(link)
        with trio.fail_after(10):
            async with run_link(link):
                failed = await recorder.wait_state(LinkState.BACKING_OFF, 5)
        nursery.cancel_scope.cancel()
    assert failed.status.unfixable
    assert "rejected the credentials (HTTP 401)" in failed.status.last_error
    assert "a-wrong-key-123" not in caplog.text


async def test_twilio_session_against_the_twilio_bot(twilio_bot: BotProcess):
    bot = twilio_bot
    mark = bot.mark()
    link = Link(make_config(bot.url, bot={"serializer": "twilio"}))
    recorder = StatusRecorder(link)
    collector = EventCollector(link)
    with trio.fail_after(15):
        async with run_link(link, collect=collector):
            ready = await recorder.wait_state(LinkState.READY, 5)
            assert "connected" in recorder.states()  # CONNECTED, then READY at once: no RTVI here
            start = await bot.wait_for_async(event_is("twilio_start"), 5, since=mark)
            assert not link.send_message(rtvi.push_to_talk("start"))  # Twilio carries no messages
            sent = await stream(link, 0.6, rate=8000)
            # Three resamplers on the bot's side (8k->16k in, 16k->24k echo, 24k->8k out) hold more back.
            await collector.wait_for(
                lambda c: c.audio_bytes.get(1, 0) >= echoed_at_least(sent, 8000, 8000, tail=0.3), 5
            )
            audio_in = await bot.wait_for_async(event_is("audio_in"), 5, since=mark)
    assert ready.status.state is LinkState.READY
    assert start["streamSid"].startswith("MZ")
    assert audio_in["rate"] == 16000  # the bot's serializer decoded our mu-law into its pipeline rate
    echoed = collector.audio[1]
    assert {c.sample_rate for c in echoed} == {8000}
    assert abs(dominant_frequency(echoed) - 440.0) < 15.0
    assert link.counters.dropped_messages_total == 1
    assert link.counters.garbage_frames_total == 0


async def test_barge_in_interrupts_the_bot(shared_bot: BotProcess):
    bot = shared_bot
    mark = bot.mark()
    link = Link(make_config(bot.url))
    recorder = StatusRecorder(link)
    collector = EventCollector(link)
    with trio.fail_after(15):
        async with run_link(link, collect=collector):
            await recorder.wait_state(LinkState.READY, 5)
            assert link.send_message(rtvi.client_message("say", {"ms": 3000}))
            await collector.wait_for(lambda c: c.of_type(rtvi.BotStartedSpeaking), 5)
            await collector.wait_for(lambda c: c.audio_bytes.get(1, 0) >= 4 * 1920, 5)
            assert link.send_message(rtvi.push_to_talk("start"))
            await collector.wait_for(lambda c: c.of_type(Interruption) and c.of_type(rtvi.BotInterrupted), 5)
            await bot.wait_for_async(event_is("interrupted"), 5, since=mark)
            spoken = collector.audio_bytes[1]
    # A 3 s tone at 24 kHz is 144000 bytes; the interruption cut it well short.
    assert spoken < 144000 * 0.8
    assert isinstance(collector.events[0][1], SessionStarted)
