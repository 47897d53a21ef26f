"""The link against the real Pipecat echo bot on loopback, for compatibility: the handshake, audio both
ways and the bot's pongs, kill -9 and restart, start endpoints (single-use tokens, an http wsUrl, a
refusal, the Twilio body), Twilio, barge-in.

The link's timing and decisions are tested in virtual time (test_link_shell.py, test_link_machine.py);
here the assertions are on states and causes. Recovery times are printed (run with -s), never asserted.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import trio
import trio_websocket

from voiceterm.config_load import config_from_dict
from voiceterm.core.linkstate import LinkState
from voiceterm.io.link import Link, SessionStarted
from voiceterm.protocol import rtvi, rtvi_events
from voiceterm.protocol.events import AudioChunk, Interruption
from voiceterm_devkit.bot import BotProcess, event_is
from voiceterm_devkit.linkwatch import EventCollector, StatusRecorder, run_link
from voiceterm_devkit.netfaults import FaultProxy, TokenStore
from voiceterm_devkit.start_server import StartEndpointServer

pytestmark = pytest.mark.bot

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
    assert any(isinstance(e, rtvi_events.BotReady) for e in collector.of_type(rtvi_events.RTVIEvent))
    echoed = collector.audio[1]
    assert {c.sample_rate for c in echoed} == {24000}
    assert abs(dominant_frequency(echoed) - 440.0) < 10.0  # our tone, resampled, came back
    assert link.counters.sent_audio_bytes_total == sent
    assert link.counters.garbage_frames_total == 0
    assert link.counters.dropped_incoming_total == 0
    assert link.counters.pings_sent_total >= 1 and link.counters.pings_timed_out_total == 0  # the bot pongs
    assert collector.sessions_ended()[-1].failure is False  # closed on purpose
    await bot.wait_for_async(event_is("disconnect_bot"), 5, since=mark)  # the goodbye reached the bot


async def test_kill_and_restart_mid_stream(fresh_bot: BotProcess, caplog):
    caplog.set_level(logging.INFO, "voiceterm.link")
    bot = fresh_bot
    cfg = make_config(bot.url, heartbeat={"interval": 0})
    # A session that carried echo has proved the bot healthy (stable_after): each kill starts a new outage.
    link = Link(cfg, stable_after=0.2)
    recorder = StatusRecorder(link)
    collector = EventCollector(link, keep_audio=False)
    cycles = 3
    recoveries, startups = [], []
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
                bot.kill()
                lost = await recorder.wait_state(LinkState.BACKING_OFF, 5, since=mark)
                assert lost.status.last_error == "connection lost (no close frame)", f"cycle {cycle}"
                startups.append(await trio.to_thread.run_sync(bot.restart))
                listening_at = bot.listening_event()["t"]
                ready = await recorder.wait_state(LinkState.READY, 10, since=mark)
                recoveries.append(ready.at - listening_at)
                assert ready.status.connects_total == session + 1, f"cycle {cycle}"
                # Between the loss and the new session, only the two causes an outage like this has.
                errors = {seen.status.last_error for seen in recorder.history[mark:]}
                assert errors <= {"connection lost (no close frame)", "connection refused"}, errors
            await collector.wait_for(lambda c: c.audio_bytes.get(cycles + 1, 0) >= 19200, 5)
            lines = link_lines(caplog)[lines_before:]

    print(
        "\nkill/restart: bot startup "
        + ", ".join(f"{s:.2f}" for s in startups)
        + " s; link back after the bot listened: "
        + ", ".join(f"{r:.3f}" for r in recoveries)
        + f" s (max backoff {cfg.reconnect.max_delay} s); {link.counters.failures_total} failed attempts; "
        + f"{len(lines)} log lines"
    )
    assert collector.sessions_started() == list(range(1, cycles + 2))
    ended = collector.sessions_ended()
    assert [e.reason for e in ended[:cycles]] == ["connection lost (no close frame)"] * cycles
    # Each outage is news: the loss and the recovery are logged once each, whatever the number of refused
    # attempts in between (how many there are depends on how fast the bot restarts: at most one line).
    text = [r.getMessage() for r in lines]
    assert sum("connection lost" in t for t in text) == cycles, text
    assert sum("state=ready" in t and "down=" in t for t in text) == cycles, text
    assert sum("connection refused" in t for t in text) <= cycles, text
    assert len(text) <= 3 * cycles, text


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


async def test_an_endpoint_answering_an_http_ws_url_connects(shared_bot: BotProcess):
    # pipecat-client-web's own example passes wsUrl: 'http://localhost:7860/ws'; a browser maps it to ws://.
    http_url = shared_bot.url.replace("ws://", "http://")
    async with trio.open_nursery() as nursery:
        endpoint = StartEndpointServer(ws_url=http_url, url_key="ws_url", issue_tokens=False)
        await nursery.start(endpoint.run)
        link = Link(make_config(bot={"endpoint": endpoint.url}))
        recorder = StatusRecorder(link)
        collector = EventCollector(link)
        with trio.fail_after(15):
            async with run_link(link, collect=collector):
                await recorder.wait_state(LinkState.READY, 5)
                sent = await stream(link, 0.3)
                await collector.wait_for(lambda c: c.audio_bytes.get(1, 0) >= echoed_at_least(sent), 5)
                assert link.snapshot()["url"] == shared_bot.url
        nursery.cancel_scope.cancel()
    assert "authorization" not in endpoint.calls[0].headers  # no bot.token: no Bearer
    assert endpoint.calls[0].body == {"transport": "websocket"}  # the default body for protobuf


async def test_twilio_through_a_runner_endpoint_and_a_refusal_in_the_journal(twilio_bot: BotProcess, caplog):
    """An endpoint that serves Twilio only (pipecat's runner with -t twilio): a protobuf link asking for
    "websocket" is refused with 400, and the journal says why in one line; a Twilio link's default body
    asks for "twilio" and gets a session with the real Twilio bot, audio both ways."""
    caplog.set_level(logging.INFO, "voiceterm.link")
    bot = twilio_bot
    mark = bot.mark()
    async with trio.open_nursery() as nursery:
        endpoint = StartEndpointServer(ws_url=bot.url, transport="twilio", issue_tokens=False)
        await nursery.start(endpoint.run)
        refused = Link(make_config(bot={"endpoint": endpoint.url}))
        recorder = StatusRecorder(refused)
        with trio.fail_after(10):
            async with run_link(refused):
                failed = await recorder.wait_state(LinkState.BACKING_OFF, 5)

        link = Link(make_config(bot={"endpoint": endpoint.url, "serializer": "twilio"}))
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
        nursery.cancel_scope.cancel()

    said = "Transport 'websocket' is not allowed. Server is configured for 'twilio' only (-t twilio)."
    assert failed.status.last_error == f"start endpoint {endpoint.url} answered HTTP 400: {said}"
    assert failed.status.unfixable
    journal = [r.getMessage() for r in caplog.records if r.name == "voiceterm.link"]
    assert sum(said in line for line in journal) == 1 and all("\n" not in line for line in journal)
    assert [c.body for c in endpoint.calls] == [{"transport": "websocket"}, {"transport": "twilio"}]
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
            await collector.wait_for(lambda c: c.of_type(rtvi_events.BotStartedSpeaking), 5)
            await collector.wait_for(lambda c: c.audio_bytes.get(1, 0) >= 4 * 1920, 5)
            assert link.send_message(rtvi.push_to_talk("start"))
            await collector.wait_for(
                lambda c: c.of_type(Interruption) and c.of_type(rtvi_events.BotInterrupted), 5
            )
            await bot.wait_for_async(event_is("interrupted"), 5, since=mark)
            spoken = collector.audio_bytes[1]
    # A 3 s tone at 24 kHz is 144000 bytes; the interruption cut it well short.
    assert spoken < 144000 * 0.8
    assert isinstance(collector.events[0][1], SessionStarted)
