"""A circuit breaker per bank, fed by the outcomes of real calls.

Closed, it lets every call through and counts outcomes. It opens after
``failure_threshold`` failures in a row, or when the failure rate over the last
``window_seconds`` reaches ``failure_rate_percent`` with at least ``min_calls`` calls, so a
bank that fails one call in two is left alone as surely as one that is down. Open, it
lets nothing through for ``open_seconds``; then it is half-open and lets exactly one
trial call through: a success closes it, a failure opens it again.

It is pure: time comes from the injected clock, and nothing here does I/O.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum

from payhub.domain.clock import Clock
from payhub.routing.config import BreakerPolicy

TRIAL_LEASE_SECONDS = 120.0
"""A trial that reports no outcome this long is taken as lost and another one is let
through. It is longer than any bank call may last (the hub's HTTP client gives up after
15 s), so two trials are never in flight at once, yet a trial handed to a caller that
never made the call (an earlier bank took the order) does not keep the bank shut."""


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """The health of one bank as recent calls showed it."""

    def __init__(self, policy: BreakerPolicy, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self._open = False
        self._opened_at = 0.0
        self._trial_since: float | None = None
        self._in_a_row = 0
        self._window: deque[list[int]] = deque()
        """[second, calls, failures] per second with calls, oldest first."""

    def _now(self) -> float:
        return self.clock().timestamp()

    @property
    def state(self) -> BreakerState:
        if not self._open:
            return BreakerState.CLOSED
        if self._now() < self._opened_at + self.policy.open_seconds:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    @property
    def retry_after(self) -> float:
        """Seconds until an open breaker lets a trial through (0 when it would now)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return self._opened_at + self.policy.open_seconds - self._now()

    def available(self) -> bool:
        """Whether a call would be let through now; changes nothing."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        return state is BreakerState.HALF_OPEN and not self._trial_in_flight()

    def acquire(self) -> bool:
        """Let a call through if the state allows; half-open, this takes the one trial."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self._trial_in_flight():
            return False
        self._trial_since = self._now()
        return True

    def record_success(self) -> None:
        state = self.state
        if state is BreakerState.OPEN:
            return  # a call begun before the breaker opened proves little; wait the cool-down
        if state is BreakerState.HALF_OPEN:
            self._close()
            return
        self._in_a_row = 0
        self._count(failed=False)

    def record_failure(self) -> None:
        state = self.state
        if state is BreakerState.OPEN:
            return
        if state is BreakerState.HALF_OPEN:
            self._trip()
            return
        self._in_a_row += 1
        calls, failures = self._count(failed=True)
        policy = self.policy
        too_many_in_a_row = self._in_a_row >= policy.failure_threshold
        too_high_a_rate = (
            policy.failure_rate_percent > 0
            and calls >= policy.min_calls
            and failures * 100 >= policy.failure_rate_percent * calls
        )
        if too_many_in_a_row or too_high_a_rate:
            self._trip()

    def _trial_in_flight(self) -> bool:
        return self._trial_since is not None and (
            self._now() < self._trial_since + TRIAL_LEASE_SECONDS
        )

    def _trip(self) -> None:
        self._open = True
        self._opened_at = self._now()
        self._trial_since = None

    def _close(self) -> None:
        self._open = False
        self._trial_since = None
        self._in_a_row = 0
        self._window.clear()

    def _count(self, *, failed: bool) -> tuple[int, int]:
        """Add one outcome to the window; the window's calls and failures after it."""
        second = int(self._now())
        window = self._window
        while window and window[0][0] <= second - self.policy.window_seconds:
            window.popleft()
        if window and window[-1][0] == second:
            window[-1][1] += 1
            window[-1][2] += int(failed)
        else:
            window.append([second, 1, int(failed)])
        return sum(b[1] for b in window), sum(b[2] for b in window)
