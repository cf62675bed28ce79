"""The circuit breaker's states on a clock that moves only when told: closed → open → half-open.

Every transition is driven by recorded outcomes and clock moves, never by sleeping.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payhub.domain.clock import FakeClock
from payhub.routing import BreakerPolicy, BreakerState, CircuitBreaker
from payhub.routing.breaker import TRIAL_LEASE_SECONDS

POLICY = BreakerPolicy(
    failure_threshold=3, failure_rate_percent=50, min_calls=10, window_seconds=60, open_seconds=30
)


def breaker(policy: BreakerPolicy = POLICY) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    return CircuitBreaker(policy, clock), clock


def opened() -> tuple[CircuitBreaker, FakeClock]:
    b, clock = breaker()
    for _ in range(POLICY.failure_threshold):
        b.record_failure()
    assert b.state is BreakerState.OPEN
    return b, clock


def test_closed_lets_every_call_through() -> None:
    b, _ = breaker()
    assert b.state is BreakerState.CLOSED
    assert all(b.acquire() for _ in range(100))


def test_opens_after_failures_in_a_row() -> None:
    b, _ = breaker()
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.CLOSED
    b.record_failure()
    assert b.state is BreakerState.OPEN
    assert not b.acquire() and not b.available()


def test_a_success_resets_the_failures_in_a_row() -> None:
    b, _ = breaker(BreakerPolicy(failure_threshold=3, failure_rate_percent=0))
    for _ in range(4):
        b.record_failure()
        b.record_failure()
        b.record_success()
    assert b.state is BreakerState.CLOSED


def test_opens_when_the_failure_rate_over_the_window_is_reached() -> None:
    b, clock = breaker()
    # failure, failure, success: never three in a row, but two calls in three fail
    for _ in range(3):
        b.record_failure()
        b.record_failure()
        b.record_success()
        clock.advance(1)
    assert b.state is BreakerState.CLOSED  # 9 calls: fewer than min_calls
    b.record_failure()
    assert b.state is BreakerState.OPEN  # 7 of 10 failed


def test_the_rate_counts_only_the_window() -> None:
    b, clock = breaker()
    for _ in range(6):
        b.record_failure()
        b.record_success()  # 50 % failures, but spread so the window never holds 10 calls
        clock.advance(20)
    assert b.state is BreakerState.CLOSED


def test_a_low_failure_rate_keeps_it_closed() -> None:
    b, _ = breaker()
    for _ in range(50):
        b.record_failure()
        b.record_success()
        b.record_success()  # 33 %
    assert b.state is BreakerState.CLOSED


def test_a_zero_rate_turns_the_rate_off() -> None:
    policy = BreakerPolicy(failure_threshold=3, failure_rate_percent=0, min_calls=1)
    b, _ = breaker(policy)
    for _ in range(100):
        b.record_failure()
        b.record_failure()
        b.record_success()
    assert b.state is BreakerState.CLOSED


def test_half_open_after_the_cool_down_lets_one_trial_through() -> None:
    b, clock = opened()
    clock.advance(POLICY.open_seconds - 1)
    assert b.state is BreakerState.OPEN
    assert b.retry_after == pytest.approx(1)
    clock.advance(1)
    assert b.state is BreakerState.HALF_OPEN
    assert b.available()
    assert b.acquire()
    assert not b.acquire() and not b.available()


def test_a_trial_success_closes_it() -> None:
    b, clock = opened()
    clock.advance(POLICY.open_seconds)
    assert b.acquire()
    b.record_success()
    assert b.state is BreakerState.CLOSED
    assert b.acquire() and b.acquire()
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.CLOSED  # the failures before opening are forgotten


def test_a_trial_failure_opens_it_again_for_a_full_cool_down() -> None:
    b, clock = opened()
    clock.advance(POLICY.open_seconds + 100)
    assert b.acquire()
    b.record_failure()
    assert b.state is BreakerState.OPEN
    clock.advance(POLICY.open_seconds - 1)
    assert not b.acquire()
    clock.advance(1)
    assert b.acquire()


def test_a_lost_trial_is_replaced_after_its_lease() -> None:
    b, clock = opened()
    clock.advance(POLICY.open_seconds)
    assert b.acquire()
    clock.advance(TRIAL_LEASE_SECONDS - 1)
    assert not b.acquire()
    clock.advance(1)
    assert b.acquire()


def test_outcomes_while_open_change_nothing() -> None:
    b, clock = opened()
    b.record_success()
    assert b.state is BreakerState.OPEN
    b.record_failure()
    clock.advance(POLICY.open_seconds)
    assert b.state is BreakerState.HALF_OPEN  # the late failure did not extend the cool-down


# --- properties ---------------------------------------------------------------------------

STEPS = st.lists(
    st.one_of(
        st.just(("acquire", 0)),
        st.just(("success", 0)),
        st.just(("failure", 0)),
        st.tuples(st.just("advance"), st.integers(min_value=0, max_value=200)),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(steps=STEPS, threshold=st.integers(1, 4), rate=st.integers(0, 100))
def test_half_open_never_lets_more_than_one_trial_through(
    steps: list[tuple[str, int]], threshold: int, rate: int
) -> None:
    """Between entering half-open and the next outcome, one trial per lease at most."""
    policy = BreakerPolicy(
        failure_threshold=threshold,
        failure_rate_percent=rate,
        min_calls=3,
        window_seconds=60,
        open_seconds=30,
    )
    b, clock = breaker(policy)
    for _ in range(threshold):  # start open, so that the steps reach half-open often
        b.record_failure()
    trial_at: float | None = None  # when the outstanding half-open trial was granted
    for action, seconds in steps:
        if action == "advance":
            clock.advance(seconds)
            continue
        if action != "acquire":
            trial_at = None  # any outcome ends the trial
            getattr(b, f"record_{action}")()
            continue
        state = b.state
        granted = b.acquire()
        now = clock().timestamp()
        if state is BreakerState.CLOSED:
            assert granted
        elif state is BreakerState.OPEN:
            assert not granted
        elif granted:
            assert trial_at is None or now >= trial_at + TRIAL_LEASE_SECONDS
            trial_at = now
        if state is not BreakerState.HALF_OPEN:
            trial_at = None if state is BreakerState.CLOSED else trial_at


@settings(max_examples=200, deadline=None)
@given(outcomes=st.lists(st.booleans(), max_size=60))
def test_it_opens_exactly_on_failures_in_a_row_when_the_rate_is_off(
    outcomes: list[bool],
) -> None:
    policy = BreakerPolicy(failure_threshold=4, failure_rate_percent=0, open_seconds=30)
    b, _ = breaker(policy)
    in_a_row = 0
    for failed in outcomes:
        if b.state is BreakerState.OPEN:
            break
        in_a_row = in_a_row + 1 if failed else 0
        b.record_failure() if failed else b.record_success()
        assert (b.state is BreakerState.OPEN) == (in_a_row >= 4)
