"""The pure client-request table: replies matched by id, one outcome per request, timeouts, session ends."""

from __future__ import annotations

import pytest

from voiceterm.core.client_requests import ClientRequests, RequestError


def test_a_reply_is_matched_to_its_request_by_id() -> None:
    r = ClientRequests()
    r.open("aa", owner=3, t="ping", now=1.0, timeout_s=5)
    r.open("bb", owner=4, t="ping", now=1.0, timeout_s=5)
    outcome = r.response("bb", {"pong": 2}, 1.25)
    assert (outcome.request.owner, outcome.ok, outcome.data, outcome.elapsed_s) == (
        4,
        True,
        {"pong": 2},
        0.25,
    )
    assert r.response("bb", {"pong": 3}, 1.3) is None  # a second reply: nobody waits for it
    assert r.response(None, {}, 1.3) is None  # a server-response without an id
    assert r.counters["client_responses_unmatched_total"] == 2
    assert r.snapshot()["pending"] == 1


def test_a_refusal_ends_the_request_but_unrelated_error_responses_pass() -> None:
    r = ClientRequests()
    r.open("aa", 3, "ping", 1.0, 5)
    assert r.refused("zz", "bad", 1.1) is None  # an error-response about another message
    outcome = r.refused("aa", "refused on purpose", 1.2)
    assert (outcome.ok, outcome.error) == (False, "the bot refused the request: refused on purpose")


def test_time_outs_and_session_ends_give_each_open_request_one_outcome() -> None:
    r = ClientRequests()
    r.open("aa", 3, "slow", 1.0, 0.5)
    r.open("bb", 3, "slow", 1.0, 2.0)
    assert r.next_deadline() == 1.5
    assert r.tick(1.49) == []
    (late,) = r.tick(1.5)
    assert (late.request.request_id, late.error) == ("aa", "no reply within 0.5 s")
    (lost,) = r.session_ended(1.7)
    assert (lost.request.request_id, lost.error) == ("bb", "the session ended before the reply came")
    assert r.tick(10.0) == [] and r.next_deadline() is None


def test_requests_are_bounded_and_forgotten_with_their_client() -> None:
    r = ClientRequests(max_pending=2)
    r.open("aa", 3, "x", 1.0, 5)
    with pytest.raises(RequestError, match="already waiting"):
        r.open("aa", 4, "x", 1.0, 5)
    r.open("bb", 4, "x", 1.0, 500)  # clamped to the longest timeout
    assert r.next_deadline() == 6.0
    with pytest.raises(RequestError, match="2 requests already wait"):
        r.open("cc", 4, "x", 1.0, 5)
    r.forget(3)
    assert r.response("aa", 1, 1.1) is None
    assert r.tick(200.0)[0].request.request_id == "bb"
