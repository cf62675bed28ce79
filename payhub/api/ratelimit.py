"""Per-principal request rate limits: a token bucket each, refilled continuously.

A portal gets ``rate`` requests per second on average and bursts of up to twice that;
past it, ``429 rate_limited`` with ``Retry-After``. The limit is per hub process: with
N processes a portal may reach N × rate, which is the point of adding processes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from payhub.errors import ProblemError


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, rate: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, 2 * rate)
        self._monotonic = monotonic
        self._buckets: dict[str, _Bucket] = {}

    def check(self, principal: str) -> None:
        """Take one token for ``principal`` or raise ``rate_limited``; a rate of 0 is no limit."""
        if self.rate <= 0:
            return
        now = self._monotonic()
        bucket = self._buckets.get(principal)
        if bucket is None:
            bucket = self._buckets[principal] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < 1:
            wait = math.ceil((1 - bucket.tokens) / self.rate)
            raise ProblemError(
                "rate_limited",
                f"more than {self.rate:g} requests per second; retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        bucket.tokens -= 1
