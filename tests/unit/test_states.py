"""The payment state machine of CONTRACT §3, declared once in payhub.domain.states."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from payhub.domain.states import (
    EVENT_TYPE,
    TRANSITIONS,
    PaymentStatus,
    can_transition,
    is_open,
    statuses_that_may_become,
)

S = PaymentStatus
FINAL = {S.SUCCEEDED, S.FAILED, S.EXPIRED, S.CANCELLED}


def test_open_payments_may_end_any_way() -> None:
    for start in (S.PENDING, S.UNKNOWN):
        assert is_open(start)
        for final in FINAL:
            assert can_transition(start, final)


def test_final_states_stay_final_but_expired_may_still_be_paid() -> None:
    for final in FINAL:
        assert not is_open(final)
    assert TRANSITIONS[S.SUCCEEDED] == frozenset()
    assert TRANSITIONS[S.FAILED] == frozenset()
    assert TRANSITIONS[S.CANCELLED] == frozenset()
    assert TRANSITIONS[S.EXPIRED] == frozenset({S.SUCCEEDED})
    assert not can_transition(S.SUCCEEDED, S.FAILED)  # a late failure after success


def test_every_status_has_its_event_and_guards_agree() -> None:
    assert set(EVENT_TYPE) == set(S)
    assert {EVENT_TYPE[s] for s in FINAL} == {
        "payment.succeeded",
        "payment.failed",
        "payment.expired",
        "payment.cancelled",
    }
    for target in S:
        assert statuses_that_may_become(target) == {s for s in S if can_transition(s, target)}


@given(st.lists(st.sampled_from(list(S)), max_size=30))
def test_a_walk_that_ignores_illegal_transitions_never_leaves_success(steps: list[S]) -> None:
    status = S.PENDING
    seen_success = False
    for target in steps:
        if can_transition(status, target):
            status = target
        seen_success |= status is S.SUCCEEDED
        if seen_success:
            assert status is S.SUCCEEDED
