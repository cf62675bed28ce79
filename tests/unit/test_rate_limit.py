"""The per-principal token bucket, on a fake monotonic clock."""

from __future__ import annotations

import pytest

from payhub.api.ratelimit import RateLimiter
from payhub.errors import ProblemError


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_limited_then_refilled() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(5, monotonic=clock)
    for _ in range(10):  # a burst of twice the rate
        limiter.check("portal:a")
    with pytest.raises(ProblemError) as limited:
        limiter.check("portal:a")
    assert limited.value.code == "rate_limited"
    assert limited.value.status == 429
    assert limited.value.headers["Retry-After"] == "1"
    limiter.check("portal:b")  # another principal has its own bucket
    clock.now += 0.2  # one token back at 5 per second
    limiter.check("portal:a")
    with pytest.raises(ProblemError):
        limiter.check("portal:a")


def test_zero_rate_means_no_limit() -> None:
    limiter = RateLimiter(0, monotonic=FakeMonotonic())
    for _ in range(10_000):
        limiter.check("portal:a")
