"""When a failed delivery is tried again (CONTRACT §4): about 5 s, 5 min, 30 min, 2 h, 5 h,
10 h, 14 h, 20 h, 24 h, each ±10 % so that a portal coming back is not hit by every
retry of an outage at the same second. After the last retry the event is dead.
"""

from __future__ import annotations

import random
from datetime import timedelta

RETRY_DELAYS = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
"""Seconds after attempt 1, 2, … fails; attempt ``len + 1`` failing makes the event dead."""
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.10


def retry_delay(attempt: int, rng: random.Random) -> timedelta | None:
    """The wait after attempt number ``attempt`` (1-based) failed; ``None``: it is dead."""
    if attempt >= MAX_ATTEMPTS:
        return None
    base = RETRY_DELAYS[attempt - 1]
    return timedelta(seconds=base * rng.uniform(1 - JITTER, 1 + JITTER))
