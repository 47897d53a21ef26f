"""The link's small pure parts: the one exception walker (voiceterm/errors.py), the network words
(io/neterrors.py), the queue bookkeeping (core/linkqueues.py) and the order the inbound pipe keeps
(io/linkpipes.py)."""

from __future__ import annotations

import socket
import ssl
import sys

import pytest
import trio
import trio.testing

from voiceterm.core.linkqueues import Backlog, Outbox, OutgoingAudio, OutgoingMessage
from voiceterm.core.linkstate import LinkCounters
from voiceterm.errors import find_in_chain, first_real, walk
from voiceterm.io.linkpipes import Inbound
from voiceterm.io.neterrors import describe_network, describe_tls, status_is_unfixable

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup


def wrapped(inner: BaseException) -> BaseException:
    """`inner` as a connect error arrives: an OSError caused by it, in a group, in a group."""
    try:
        try:
            raise inner
        except BaseException as e:
            raise OSError("connect failed") from e
    except OSError as outer:
        return ExceptionGroup("happy eyeballs", [ExceptionGroup("attempt", [outer])])


def test_the_walker_goes_through_groups_causes_and_contexts_once():
    refused = ConnectionRefusedError(111, "Connection refused")
    exc = wrapped(refused)
    kinds = [type(e).__name__ for e in walk(exc)]
    assert kinds == ["ExceptionGroup", "ExceptionGroup", "OSError", "ConnectionRefusedError"]
    assert find_in_chain(exc, ConnectionRefusedError) is refused
    assert find_in_chain(exc, OSError, lambda e: e.errno == 111) is refused
    assert find_in_chain(exc, KeyError) is None
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a  # a cycle
    assert [str(e) for e in walk(a)] == ["a", "b"]


def test_first_real_skips_cancellations_and_does_not_follow_causes():
    error = KeyError("x")
    assert (
        first_real(BaseExceptionGroup("g", [trio.Cancelled._create(), error]), skip=trio.Cancelled) is error
    )
    cancelled = trio.Cancelled._create()
    cancelled.__context__ = OSError("raised while handling")
    assert (
        first_real(BaseExceptionGroup("g", [cancelled]), skip=trio.Cancelled) is None
    )  # a cancellation stays one


def test_network_and_tls_words():
    assert describe_network(wrapped(ConnectionRefusedError(111, "refused"))) == "connection refused"
    assert (
        describe_network(wrapped(socket.gaierror(-2, "Name or service not known")))
        == "host name not found (DNS)"
    )
    assert describe_network(wrapped(ConnectionResetError(104, "Connection reset by peer"))) == (
        "cannot connect: Connection reset by peer"
    )
    assert describe_network(trio.BrokenResourceError()) == "connection lost"
    assert describe_network(KeyError("x")) is None
    cert = ssl.SSLCertVerificationError(1, "verify failed")
    cert.verify_message = "Hostname mismatch, certificate is not valid for 'evil\nname'"
    failure = describe_tls(wrapped(cert))
    assert failure is not None and failure.unfixable
    assert "\n" not in failure.reason and "set bot.ca_file if it uses a private CA" in failure.reason
    assert describe_tls(KeyError("x")) is None


@pytest.mark.parametrize(
    ("status", "unfixable"), [(400, True), (401, True), (404, True), (408, False), (429, False), (500, False)]
)
def test_which_statuses_a_retry_cannot_fix(status, unfixable):
    assert status_is_unfixable(status) is unfixable


def test_the_outbox_is_bounded_messages_first_and_counts_every_drop():
    counters = LinkCounters()
    box = Outbox(counters, audio_capacity=2, message_capacity=1)
    assert box.put_audio(b"\x00\x00", 16000, 1.0) and box.put_audio(b"\x01\x00", 16000, None)
    assert not box.put_audio(b"\x02\x00", 16000, None)  # full
    assert not box.put_audio("not bytes", 16000, None)  # type: ignore[arg-type]
    assert box.put_message({"type": "a"}) and not box.put_message({"type": "b"})
    taken = [box.take(), box.take()]
    assert taken == [OutgoingMessage({"type": "a"}), OutgoingAudio(b"\x00\x00", 16000, 1.0)]
    box.sent(taken[0])
    box.lost(taken[1])
    box.drop_all()
    assert box.take() is None and (box.audio_queued, box.messages_queued) == (0, 0)
    assert counters.dropped_outgoing_audio_total == 4  # full, not bytes, lost, dropped at the end
    assert counters.dropped_messages_total == 1 and counters.sent_messages_total == 1


def test_the_backlog_keeps_the_newest_and_counts_what_it_drops():
    counters = LinkCounters()
    backlog = Backlog(counters, capacity=2)
    assert backlog.admits_audio()
    a, b, c = object(), object(), object()
    for event in (a, b, c):
        backlog.hold(event)
    assert not backlog.admits_audio() and len(backlog) == 2 and backlog.head() is b
    backlog.delivered(b)
    backlog.delivered(a)  # not the head (dropped meanwhile): nothing happens
    assert backlog.head() is c
    backlog.abandon()
    assert len(backlog) == 0 and counters.dropped_incoming_total == 2


async def test_audio_waits_behind_an_event_handed_to_a_reader_that_has_not_run_yet():
    """The reader is parked on the channel; an event reaches it (it is runnable, not run) and audio
    follows in the same step: the audio goes through the channel, after the event, not inline before it."""
    inbound = Inbound(LinkCounters(), capacity=4, backlog=4)
    handled: list[str] = []
    inbound.audio_handler = lambda event: handled.append(f"{event} inline")

    async def read():
        async for event in inbound.receive:
            handled.append(event)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        assert inbound.deliver("audio 1", droppable=True)  # the reader waits idle: inline
        assert inbound.deliver("bot-started-speaking", droppable=False)
        assert inbound.deliver("audio 2", droppable=True)
        await trio.testing.wait_all_tasks_blocked()
        assert inbound.deliver("audio 3", droppable=True)
        inbound.close()
    assert handled == ["audio 1 inline", "bot-started-speaking", "audio 2", "audio 3 inline"]


async def test_after_the_upgrade_the_watched_stream_passes_calls_straight_through():
    from voiceterm.io.wsopen import _Watched

    left, right = trio.testing.memory_stream_pair()
    cuts: list[BaseException] = []
    watched = _Watched(left, cuts.append)
    watched.pass_through()
    assert watched.send_all == left.send_all and watched.receive_some == left.receive_some
    await watched.send_all(b"hello")
    assert await right.receive_some() == b"hello"
    await right.aclose()
    assert await watched.receive_some() == b""  # the end of the stream after the upgrade: no cut
    assert cuts == []
