"""fetch_session.py: what a follower sends in its fetch session, and how
the leader's answers move the session on or start it over (Kafka's
FetchSessionHandler)."""

from __future__ import annotations

from pybroker.protocol.error_codes import ErrorCode
from pybroker.replica.fetch_session import FollowerSession

A, B, C = ("t", 0), ("t", 1), ("u", 0)


def opened(wanted: dict, session_id: int = 7) -> FollowerSession:
    s = FollowerSession()
    ask = s.request(wanted)
    assert (ask.session_id, ask.epoch, ask.full) == (0, 0, True)
    assert sorted(ask.send) == sorted(wanted) and ask.forgotten == []
    assert s.answered(0, session_id)
    return s


def test_a_session_sends_only_what_changed_and_forgets_what_is_not_wanted():
    s = opened({A: 1, B: 1, C: 1})
    ask = s.request({A: 2, B: 1})
    assert (ask.session_id, ask.epoch, ask.full) == (7, 1, False)
    assert ask.send == [A] and ask.forgotten == [C]
    assert s.answered(0, 7)
    ask = s.request({A: 2, B: 1, C: 5})
    assert (ask.epoch, ask.send, ask.forgotten) == (2, [C], [])


def test_an_unknown_session_starts_over_without_an_id():
    s = opened({A: 1})
    s.request({A: 1})
    assert not s.answered(ErrorCode.FETCH_SESSION_ID_NOT_FOUND, 0)
    ask = s.request({A: 1})
    assert (ask.session_id, ask.epoch, ask.full, ask.send) == (0, 0, True, [A])


def test_a_wrong_epoch_closes_the_session_and_opens_another():
    s = opened({A: 1})
    s.request({A: 1})
    assert not s.answered(ErrorCode.INVALID_FETCH_SESSION_EPOCH, 0)
    ask = s.request({A: 1, B: 1})
    assert (ask.session_id, ask.epoch, ask.full) == (7, 0, True)  # id 7 at epoch 0 closes it
    assert sorted(ask.send) == [A, B]


def test_a_broken_request_closes_the_session_on_the_next():
    s = opened({A: 1})
    s.request({A: 2})
    s.failed()
    ask = s.request({A: 2})
    assert (ask.session_id, ask.epoch, ask.full, ask.send) == (7, 0, True, [A])


def test_a_leader_without_room_for_a_session_gets_full_requests():
    s = FollowerSession()
    s.request({A: 1})
    assert s.answered(0, 0)
    ask = s.request({A: 1})
    assert (ask.session_id, ask.epoch, ask.full, ask.send) == (0, 0, True, [A])


def test_an_answer_from_another_session_is_not_taken():
    s = opened({A: 1})
    s.request({A: 1})
    assert not s.answered(0, 8)
    assert s.request({A: 1}).full


def test_a_refused_partition_is_named_again_though_unchanged():
    """The leader may have answered it without keeping it (a topic it did
    not know yet): were it left unnamed, the session would hold nothing
    for it and the follower would wait for news that never comes."""
    s = opened({A: 1, B: 1})
    s.resend(A)
    ask = s.request({B: 1})  # A backs off meanwhile: forgotten as usual
    assert (ask.send, ask.forgotten) == ([], [A])
    assert s.answered(0, 7)
    s.resend(B)
    ask = s.request({A: 1, B: 1})
    assert sorted(ask.send) == [A, B] and ask.forgotten == []
