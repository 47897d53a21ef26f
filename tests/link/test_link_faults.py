"""The link against faults on real loopback sockets: garbage and a frame over the size limit slipped into
the real Pipecat bot's stream (devkit's ChaosProxy), a proxy whose backend is down, and TLS. The close
codes in words are a plain table.

Everything with a timer is tested in virtual time in test_link_shell.py; here the sockets are real.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
import ssl
import subprocess

import pytest
import trio
import trio_websocket
from trio_websocket import ConnectionClosed

from voiceterm.config_load import config_from_dict
from voiceterm.core.linkstate import LinkState
from voiceterm.io.link import Link
from voiceterm.io.linkfailures import describe_close
from voiceterm_devkit.bot import BotProcess, find_free_port
from voiceterm_devkit.chaos import ChaosProxy, audio_payload, garbage_frames, ws_frame
from voiceterm_devkit.linkwatch import EventCollector, StatusRecorder, run_link
from voiceterm_devkit.netfaults import FaultProxy

from .memnet import bot_ready_for


def make_config(url: str, *, bot=None, reconnect=None, heartbeat=None):
    return config_from_dict(
        {
            "bot": {"url": url, "connect_timeout": 10.0, "ready_timeout": 5.0, **(bot or {})},
            "reconnect": {"initial_delay": 0.05, "max_delay": 0.2, "jitter": 0.0, **(reconnect or {})},
            "heartbeat": {"interval": 0, **(heartbeat or {})},
        },
        environ={},
    )


async def keep_talking(link: Link) -> None:
    """20 ms of silence every 20 ms: the echo bot answers each, so audio flows both ways."""
    while True:
        link.send_audio(b"\x00\x00" * 320, 16000)
        await trio.sleep(0.02)


@pytest.mark.bot
async def test_garbage_between_the_real_bots_frames_is_counted_and_the_session_goes_on(
    shared_bot: BotProcess, caplog
):
    caplog.set_level(logging.INFO, "voiceterm.link")
    async with trio.open_nursery() as nursery:
        proxy = ChaosProxy(shared_bot.port)
        await nursery.start(proxy.run)
        link = Link(make_config(proxy.url))
        recorder = StatusRecorder(link)
        collector = EventCollector(link, keep_audio=False)
        with trio.fail_after(20):
            async with run_link(link, collect=collector) as inner:
                inner.start_soon(keep_talking, link)
                await recorder.wait_state(LinkState.READY, 5)
                await collector.wait_for(lambda c: c.audio_bytes.get(1, 0) >= 9600, 5)
                frames = garbage_frames()
                assert await proxy.inject(frames, garbage=len(frames)) == 1
                before = collector.audio_bytes[1]
                await collector.wait_for(lambda c: c.audio_bytes[1] >= before + 9600, 5)  # echo goes on
                assert link.counters.garbage_frames_total == len(frames)
                assert link.status.state is LinkState.READY and link.status.connects_total == 1
        nursery.cancel_scope.cancel()
    warnings = [r.getMessage() for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0]  # six frames, one line
    assert link.counters.failures_total == 0


@pytest.mark.bot
async def test_a_frame_over_the_limit_closes_with_1009_and_the_real_bot_takes_us_back(shared_bot: BotProcess):
    async with trio.open_nursery() as nursery:
        proxy = ChaosProxy(shared_bot.port)
        await nursery.start(proxy.run)
        link = Link(make_config(proxy.url, bot={"max_message_bytes": 8192}))
        recorder = StatusRecorder(link)
        collector = EventCollector(link, keep_audio=False)
        with trio.fail_after(20):
            async with run_link(link, collect=collector) as inner:
                inner.start_soon(keep_talking, link)
                await recorder.wait_state(LinkState.READY, 5)
                mark = recorder.mark()
                big = ws_frame(audio_payload(b"\x01\x00" * 8000, 24000))
                assert await proxy.inject([big], oversized=1) == 1
                lost = await recorder.wait_state(LinkState.BACKING_OFF, 5, since=mark)
                back = await recorder.wait_state(LinkState.READY, 10, since=mark)
                await collector.wait_for(lambda c: c.audio_bytes.get(2, 0) >= 9600, 5)  # echo in session 2
        nursery.cancel_scope.cancel()
    assert "8192-byte limit" in lost.status.last_error and "1009" in lost.status.last_error
    assert not lost.status.unfixable
    assert back.status.connects_total == 2


async def test_through_a_proxy_whose_backend_is_down_each_attempt_fails_at_once():
    # A TCP proxy (or load balancer) accepts, finds its backend down, and closes. trio-websocket 0.12 alone
    # would wait for the upgrade response until bot.connect_timeout (10 s here) on every attempt.
    async with trio.open_nursery() as nursery:
        proxy = FaultProxy(find_free_port())  # nothing listens behind it
        await nursery.start(proxy.run)
        cfg = make_config(proxy.url, bot={"connect_timeout": 10.0}, reconnect={"initial_delay": 0.05})
        link = Link(cfg)
        recorder = StatusRecorder(link)
        with trio.fail_after(20):
            async with run_link(link):
                await recorder.wait_for(lambda s: s.state is LinkState.BACKING_OFF and s.attempt == 5, 15)
        nursery.cancel_scope.cancel()
    history = recorder.history
    durations = [
        later.at - seen.at
        for seen, later in itertools.pairwise(history)
        if seen.status.state is LinkState.CONNECTING and later.status.state is LinkState.BACKING_OFF
    ]
    print("\ndead backend: attempts failed after " + ", ".join(f"{1000 * d:.1f}" for d in durations) + " ms")
    assert len(durations) == 5 and proxy.counters.connections == 5
    errors = {seen.status.last_error for seen in history[1:] if seen.status.last_error}
    assert errors == {"connection closed before the upgrade was answered (a proxy whose backend is down?)"}
    assert all(d < cfg.bot.connect_timeout / 2 for d in durations)  # the cause above says why: no timeout


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
            with contextlib.suppress(ConnectionClosed):  # the link went away first: fine here
                await bot_ready_for(await request.accept())
                await trio.sleep_forever()

        server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, server_context)
        url = f"wss://127.0.0.1:{server.port}"

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
        (1009, None, "a message was too big for it", False),
        (1011, None, "internal error", False),
        (1013, None, "busy with another client", False),
        (4003, None, "token or Origin not accepted", True),
        (4999, "bye token=abc", "close code 4999: bye token=<redacted>", False),
        (4999, "line\nforged=1", "close code 4999: line\\nforged=1", False),
        (4999, "x" * 500, "close code 4999: " + "x" * 80 + "…", False),
    ],
)
def test_close_codes_in_words(code, reason, words, unfixable):
    failure = describe_close(trio_websocket.CloseReason(code, reason), max_message_bytes=4096)
    assert words in failure.reason
    assert failure.unfixable is unfixable
    assert "abc" not in failure.reason and "\n" not in failure.reason
