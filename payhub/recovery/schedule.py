"""When the hub asks a bank about a payment it has not heard the end of.

A payment enters the schedule when it is created:

- ``unknown`` (placing the order timed out after it was sent): first query
  ``query_delays[0]`` after creation (10 s by default), because the bank may already
  hold the order and the payer is waiting;
- ``pending``: first query ``pending_after`` after creation (120 s by default). Most
  confirmations arrive within seconds of the payment; one that has not arrived by then is
  late, and querying every payment at once would only load the bank.

After each query that settles nothing (not final, an API-request code, the bank down or
not knowing the order) the next one follows ``query_delays`` in turn, the last delay
repeating: 10 s, 30 s, 1 min, 5 min, 15 min, 1 h, 1 h, … A query is never scheduled
after ``expires_at`` while the payment is open, so the worker is there to expire it on
time. An expired payment is still queried on the same steps for ``late_window`` (1 h),
so a payer whose bank took the money late is found; a late IPN needs no query at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_QUERY_DELAYS = (10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


@dataclass(frozen=True)
class RecoveryPolicy:
    """The ``[recovery]`` table of ``payhub.toml`` (seconds everywhere)."""

    enabled: bool = True
    pending_after: float = 120.0
    query_delays: tuple[float, ...] = DEFAULT_QUERY_DELAYS
    late_window: float = 3600.0
    lease: float = 60.0
    """How long a claimed payment stays with one worker: a bank query times out well
    within it (connectors wait at most 15 s), so a query in flight is never claimed twice;
    after a crash the payment is due again when the lease ends."""
    batch: int = 64
    poll_seconds: float = 1.0
    """Real seconds between rounds when nothing was due (the clock decides what is due)."""

    def first_query(self, *, created_at: datetime, expires_at: datetime, unknown: bool) -> datetime:
        """When a new payment is first queried (never after its expiry)."""
        wait = self.query_delays[0] if unknown else self.pending_after
        return min(created_at + timedelta(seconds=wait), expires_at)

    def delay(self, attempt: int) -> timedelta:
        """The wait after the ``attempt``-th query (1-based) that settled nothing."""
        index = min(max(attempt, 1), len(self.query_delays)) - 1
        return timedelta(seconds=self.query_delays[index])

    def next_query(
        self, *, now: datetime, attempt: int, expires_at: datetime, still_open: bool
    ) -> datetime | None:
        """The next query after an unsettled one; ``None``: stop asking."""
        proposed = now + self.delay(attempt)
        if still_open:
            return min(proposed, expires_at) if now < expires_at else proposed
        if proposed > expires_at + timedelta(seconds=self.late_window):
            return None
        return proposed
