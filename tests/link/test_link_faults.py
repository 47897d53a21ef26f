"""The link against misbehaving servers: small trio-websocket servers written to break the rules.

Garbage and oversized frames, close code 4003, HTTP 403 before the upgrade, a bot that never says
bot-ready, an attempt budget running out, TLS with an untrusted certificate, and the on-purpose paths
(reconnect_now, close). Bot-side frames are built with the generated pipecat schema module.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import ssl
import subprocess
import time

import pytest
import trio
import trio_websocket
from trio_websocket import ConnectionClosed

from voiceterm.config import config_from_dict
from voiceterm.core.linkstate import LinkState
from voiceterm.io.link import Link, SessionEnded, SessionStarted, describe_close
from voiceterm.protocol import frames_pb2
from voiceterm.protocol.rtvi import BotReady
from voiceterm_devkit.bot import find_free_port
from voiceterm_devkit.linkwatch import EventCollector, StatusRecorder, run_link
from voiceterm_devkit.netfaults import FaultProxy

SECRET = "tok-9f8e7d6c5b4a"


def make_config(url: str, *, bot=None, reconnect=None, heartbeat=None):
    return config_from_dict(
        {
            "bot": {"url": url, "connect_timeout": 2.0, "ready_timeout": 5.0, **(bot or {})},
            "reconnect": {"initial_delay": 0.05, "max_delay": 0.2, "jitter": 0.0, **(reconnect or {})},
            "heartbeat": {"interval": 0, **(heartbeat or {})},
        }
    )


def audio_frame(n_bytes: int, rate: int = 24000) -> bytes:
    frame = frames_pb2.Frame()
    frame.audio.audio = b"\x01\x00" * (n_bytes // 2)
    frame.audio.sample_rate = rate
    frame.audio.num_channels = 1
    return frame.SerializeToString()


def message_frame(message: dict) -> bytes:
    frame = frames_pb2.Frame()
    frame.message.data = json.dumps(message)
    return frame.SerializeToString()


def parse_message(data: bytes) -> dict:
    frame = frames_pb2.Frame.FromString(data)
    assert frame.WhichOneof("frame") == "message"
    return json.loads(frame.message.data)


async def bot_ready_for(ws: trio_websocket.WebSocketConnection) -> dict:
    """Read client-ready and answer bot-ready with its id, as pipecat does."""
    hello = parse_message(await ws.get_message())
    assert hello["type"] == "client-ready"
    await ws.send_message(
        message_frame(
            {"label": "rtvi-ai", "type": "bot-ready", "id": hello["id"], "data": {"version": "2.2.0"}}
        )
    )
    return hello


async def serve(nursery: trio.Nursery, handler, *, port: int = 0, ssl_context=None) -> int:
    async def guarded(request):
        with contextlib.suppress(ConnectionClosed):  # the link went away first: fine here
            await handler(request)

    server = await nursery.start(trio_websocket.serve_websocket, guarded, "127.0.0.1", port, ssl_context)
    return server.port


def link_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "voiceterm.link" and r.levelno >= logging.INFO]


async def test_garbage_frames_are_counted_and_the_session_goes_on(caplog):
    caplog.set_level(logging.INFO, "voiceterm.link")
    async with trio.open_nursery() as nursery:

        async def handler(request):
            ws = await request.accept()
            hello = parse_message(await ws.get_message())
            await ws.send_message(b"\xff\xff\xff\xff")  # not protobuf
            await ws.send_message("a text frame in a binary protocol")
            await ws.send_message(audio_frame(1920))
            await ws.send_message(message_frame({"label": "rtvi-ai", "type": "bot-ready", "id": hello["id"]}))
            await trio.sleep_forever()

        port = await serve(nursery, handler)
        link = Link(make_config(f"ws://127.0.0.1:{port}"))
        recorder = StatusRecorder(link)
        collector = EventCollector(link)
        with trio.fail_after(10):
            async with run_link(link, collect=collector):
                await recorder.wait_state(LinkState.READY, 5)
                await collector.wait_for(lambda c: c.of_type(BotReady), 5)
                assert link.counters.garbage_frames_total == 2
                assert link.counters.received_audio_total == 1
                assert link.status.state is LinkState.READY
                assert link.counters.failures_total == 0
        nursery.cancel_scope.cancel()
    warnings = [r for r in link_records(caplog) if "undecodable" in r.getMessage()]
    assert len(warnings) == 1  # two garbage frames, one line


async def test_oversized_message_closes_with_1009_and_the_link_reconnects():
    sessions = 0
    async with trio.open_nursery() as nursery:

        async def handler(request):
            nonlocal sessions
            sessions += 1
            ws = await request.accept()
            if sessions == 1:
                await ws.get_message()
                await ws.send_message(audio_frame(8000))  # over the 4096-byte limit
                await ws.get_message()  # until the link closes it
            else:
                await bot_ready_for(ws)
                await trio.sleep_forever()

        port = await serve(nursery, handler)
        link = Link(make_config(f"ws://127.0.0.1:{port}", bot={"max_message_bytes": 4096}))
        recorder = StatusRecorder(link)
        with trio.fail_after(10):
            async with run_link(link):
                lost = await recorder.wait_state(LinkState.BACKING_OFF, 5)
                assert "4096-byte limit" in lost.status.last_error
                assert "1009" in lost.status.last_error
                assert not lost.status.unfixable
                back = await recorder.wait_state(LinkState.READY, 5, since=recorder.mark())
                assert back.status.connects_total == 2
        nursery.cancel_scope.cancel()


async def test_close_4003_is_unfixable_and_retried_at_the_slow_end(caplog):
    caplog.set_level(logging.INFO, "voiceterm.link")
    async with trio.open_nursery() as nursery:

        async def handler(request):
            ws = await request.accept()
            await ws.aclose(code=4003)

        port = await serve(nursery, handler)
        cfg = make_config(f"ws://127.0.0.1:{port}", reconnect={"initial_delay": 0.05, "max_delay": 0.4})
        link = Link(cfg)
        recorder = StatusRecorder(link)
        with trio.fail_after(10):
            async with run_link(link):
                first = await recorder.wait_state(LinkState.BACKING_OFF, 5)
                retry = await recorder.wait_state(LinkState.CONNECTING, 5, since=recorder.mark())
                second = await recorder.wait_state(LinkState.BACKING_OFF, 5, since=recorder.mark())
        nursery.cancel_scope.cancel()
    assert first.status.unfixable and second.status.unfixable
    assert "4003" in first.status.last_error
    assert "token or Origin" in first.status.last_error
    waited = retry.at - first.at
    assert 0.35 <= waited < 1.0, f"unfixable failure retried after {waited:.2f} s, expected max_delay 0.4 s"
    lines = [r.getMessage() for r in link_records(caplog) if "4003" in r.getMessage()]
    assert len(lines) == 1, lines  # the session loss; the same failure again is not logged
    assert "unfixable=yes" in lines[0]


async def test_http_403_before_the_upgrade_names_the_token_without_showing_it(caplog):
    caplog.set_level(logging.DEBUG)
    async with trio.open_nursery() as nursery:

        async def handler(request):
            assert request.path.endswith(f"token={SECRET}")  # the token does go to the bot
            await request.reject(403)

        port = await serve(nursery, handler)
        link = Link(make_config(f"ws://127.0.0.1:{port}/ws", bot={"token": SECRET}))
        recorder = StatusRecorder(link)
        with trio.fail_after(10):
            async with run_link(link):
                failed = await recorder.wait_state(LinkState.BACKING_OFF, 5)
        nursery.cancel_scope.cancel()
    assert failed.status.last_error == "bot rejected the token (HTTP 403)"
    assert failed.status.unfixable
    assert SECRET not in caplog.text
    assert SECRET not in json.dumps(link.snapshot())
    assert caplog.records  # debug logging was on (trio-websocket's too), and none of it shows the token


async def test_http_403_without_a_token_suggests_what_to_set():
    async with trio.open_nursery() as nursery:

        async def handler(request):
            await request.reject(403)

        port = await serve(nursery, handler)
        link = Link(make_config(f"ws://127.0.0.1:{port}"))
        recorder = StatusRecorder(link)
        with trio.fail_after(10):
            async with run_link(link):
                failed = await recorder.wait_state(LinkState.BACKING_OFF, 5)
        nursery.cancel_scope.cancel()
    assert "bot.token" in failed.status.last_error and "HTTP 403" in failed.status.last_error
    assert failed.status.unfixable


async def test_no_bot_ready_means_ready_after_the_timeout_logged_once(caplog):
    caplog.set_level(logging.INFO, "voiceterm.link")
    async with trio.open_nursery() as nursery:

        async def handler(request):  # an old pipecat: never answers client-ready
            ws = await request.accept()
            while True:
                await ws.get_message()

        port = await serve(nursery, handler)
        link = Link(make_config(f"ws://127.0.0.1:{port}", bot={"ready_timeout": 0.2}))
        recorder = StatusRecorder(link)
        with trio.fail_after(10):
            async with run_link(link):
                connected = await recorder.wait_state(LinkState.CONNECTED, 5)
                assert link.send_audio(b"\x00\x00" * 160, 16000)  # audio never waits for bot-ready
                ready = await recorder.wait_state(LinkState.READY, 5)
                link.reconnect_now()
                await recorder.wait_for(lambda s: s.connects_total == 2 and s.state is LinkState.READY, 5)
        nursery.cancel_scope.cancel()
    assert 0.15 <= ready.at - connected.at < 1.0
    assert link.counters.ready_timeouts_total == 2
    explained = [r for r in link_records(caplog) if "older bots never send it" in r.getMessage()]
    assert len(explained) == 1


async def test_spent_budget_fails_until_wake():
    port = find_free_port()
    async with trio.open_nursery() as nursery:
        cfg = make_config(f"ws://127.0.0.1:{port}", reconnect={"max_attempts": 2})
        link = Link(cfg)
        recorder = StatusRecorder(link)
        with trio.fail_after(10):
            async with run_link(link):
                failed = await recorder.wait_state(LinkState.FAILED, 5)
                assert failed.status.attempt == 2
                assert failed.status.last_error == "connection refused"
                assert link.counters.failures_total == 2
                # FAILED waits for a wake-up: no further attempts however long it sits there.
                mark = recorder.mark()
                await trio.sleep(0.5)
                assert recorder.states(mark) == [] and link.counters.failures_total == 2

                async def handler(request):
                    await bot_ready_for(await request.accept())
                    await trio.sleep_forever()

                await serve(nursery, handler, port=port)
                link.wake()
                ready = await recorder.wait_state(LinkState.READY, 5, since=mark)
                assert ready.at - recorder.history[mark].at < 1.0
                assert recorder.states(mark)[:1] == ["connecting"]
        nursery.cancel_scope.cancel()


async def test_reconnect_now_starts_a_new_session_without_a_failure():
    sessions = 0
    async with trio.open_nursery() as nursery:

        async def handler(request):
            nonlocal sessions
            sessions += 1
            ws = await request.accept()
            await bot_ready_for(ws)
            while True:
                await ws.get_message()

        port = await serve(nursery, handler)
        link = Link(make_config(f"ws://127.0.0.1:{port}"))
        recorder = StatusRecorder(link)
        collector = EventCollector(link)
        with trio.fail_after(10):
            async with run_link(link, collect=collector):
                await recorder.wait_state(LinkState.READY, 5)
                mark = recorder.mark()
                link.reconnect_now()
                await recorder.wait_for(lambda s: s.state is LinkState.READY and s.connects_total == 2, 5)
                await collector.wait_for(lambda c: c.sessions_started() == [1, 2], 5)
        nursery.cancel_scope.cancel()
    assert "backing-off" not in recorder.states(mark)
    assert link.counters.failures_total == 0
    ended = collector.sessions_ended()
    assert ended[0] == SessionEnded(session=1, reason="reconnect requested", failure=False)
    assert sessions == 2


async def test_close_says_goodbye_and_returns_quickly():
    goodbye = trio.Event()
    async with trio.open_nursery() as nursery:

        async def handler(request):
            ws = await request.accept()
            await bot_ready_for(ws)
            while True:
                message = parse_message(await ws.get_message())
                if message["type"] == "disconnect-bot":
                    goodbye.set()

        port = await serve(nursery, handler)
        link = Link(make_config(f"ws://127.0.0.1:{port}"))
        recorder = StatusRecorder(link)
        with trio.fail_after(10):
            nursery.start_soon(link.run)
            await recorder.wait_state(LinkState.READY, 5)
            started = time.monotonic()
            await link.close()
            took = time.monotonic() - started
        assert goodbye.is_set()
        assert took < 1.0
        assert link.status.state is LinkState.OFFLINE
        assert not link.send_audio(b"\x00\x00", 16000)
        nursery.cancel_scope.cancel()


async def test_close_returns_within_a_second_on_a_black_hole():
    async with trio.open_nursery() as nursery:

        async def handler(request):
            ws = await request.accept()
            await bot_ready_for(ws)
            await trio.sleep_forever()

        port = await serve(nursery, handler)
        proxy = FaultProxy(port)
        await nursery.start(proxy.run)
        link = Link(make_config(proxy.url))
        recorder = StatusRecorder(link)
        with trio.fail_after(10):
            nursery.start_soon(link.run)
            await recorder.wait_state(LinkState.READY, 5)
            proxy.blackhole()
            started = time.monotonic()
            await link.close()
            took = time.monotonic() - started
        assert took < 1.2, f"close took {took:.2f} s"
        assert link.status.state is LinkState.OFFLINE
        nursery.cancel_scope.cancel()


def test_a_link_that_never_ran_drops_and_counts():
    link = Link(make_config("ws://127.0.0.1:9"))
    assert not link.send_audio(b"\x00\x00", 16000)
    assert not link.send_message({"label": "rtvi-ai", "type": "client-message", "id": "1", "data": {}})
    assert link.counters.dropped_outgoing_audio_total == 1
    assert link.counters.dropped_messages_total == 1
    assert link.snapshot()["state"] == "offline"


def _make_cert(directory) -> tuple[str, str]:
    cert, key = str(directory / "cert.pem"), str(directory / "key.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tls_verification_is_on_by_default_and_ca_file_adds_trust(tmp_path):
    cert, key = _make_cert(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    async with trio.open_nursery() as nursery:

        async def handler(request):
            await bot_ready_for(await request.accept())
            await trio.sleep_forever()

        port = await serve(nursery, handler, ssl_context=server_context)
        url = f"wss://127.0.0.1:{port}"

        untrusting = Link(make_config(url))
        recorder = StatusRecorder(untrusting)
        with trio.fail_after(10):
            async with run_link(untrusting):
                failed = await recorder.wait_state(LinkState.BACKING_OFF, 5)
        assert "TLS certificate verification failed" in failed.status.last_error
        assert "bot.ca_file" in failed.status.last_error
        assert failed.status.unfixable

        trusting = Link(make_config(url, bot={"ca_file": cert}))
        recorder = StatusRecorder(trusting)
        with trio.fail_after(10):
            async with run_link(trusting):
                await recorder.wait_state(LinkState.READY, 5)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("code", "reason", "words", "unfixable"),
    [
        (1000, None, "bot ended the session", False),
        (1006, None, "connection lost", False),
        (1009, "Exceeded maximum message size: 4096 bytes", "4096-byte limit", False),
        (1011, None, "internal error", False),
        (1013, None, "busy with another client", False),
        (4003, None, "token or Origin not accepted", True),
        (4999, "bye token=abc", "close code 4999: bye token=<redacted>", False),
    ],
)
def test_close_codes_in_words(code, reason, words, unfixable):
    failure = describe_close(trio_websocket.CloseReason(code, reason), max_message_bytes=4096)
    assert words in failure.reason
    assert failure.unfixable is unfixable
    assert "abc" not in failure.reason


def test_session_events_are_plain_values():
    assert SessionStarted(session=1, url="ws://x") == SessionStarted(session=1, url="ws://x")


async def test_origin_and_extra_headers_go_with_the_upgrade():
    seen: dict[str, str] = {}
    async with trio.open_nursery() as nursery:

        async def handler(request):
            seen.update({k.decode().lower(): v.decode() for k, v in request.headers})
            seen["path"] = request.path
            await bot_ready_for(await request.accept())
            await trio.sleep_forever()

        port = await serve(nursery, handler)
        cfg = make_config(
            f"ws://127.0.0.1:{port}/agent?room=7",
            bot={"origin": "https://kiosk.example", "headers": {"X-Api-Key": "hk-1", "X-Unit": "lobby"}},
        )
        link = Link(cfg)
        recorder = StatusRecorder(link)
        with trio.fail_after(10):
            async with run_link(link):
                await recorder.wait_state(LinkState.READY, 5)
        nursery.cancel_scope.cancel()
    assert seen["origin"] == "https://kiosk.example"
    assert seen["x-api-key"] == "hk-1"
    assert seen["x-unit"] == "lobby"
    assert seen["path"] == "/agent?room=7"


async def test_an_unusable_ca_file_is_reported_not_raised(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("this is not a certificate\n")
    link = Link(make_config("wss://127.0.0.1:9/ws", bot={"ca_file": str(bad)}))
    recorder = StatusRecorder(link)
    with trio.fail_after(10):
        async with run_link(link):
            failed = await recorder.wait_state(LinkState.BACKING_OFF, 5)
    assert failed.status.unfixable
    assert failed.status.last_error.startswith(f"cannot load bot.ca_file {bad}")
