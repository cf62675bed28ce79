"""The simulator's sense of time: an injectable clock, and waits that can follow it.

Pay dates, deadlines and business days always come from the injected clock. Waits (a
late payer, the bank's resend schedule) follow real time with an ordinary clock, so a
test sets them small; with a ``ManualClock`` they follow that clock instead, so a test
moves through a day of resends with ``advance(86_400)`` in milliseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import datetime, timedelta

from payhub.domain.clock import FakeClock


class ManualClock(FakeClock):
    """A clock moved by hand that also wakes the simulator's waits it passes."""

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__(start)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not waiter.done():
                waiter.set_result(None)

    async def sleep(self, seconds: float) -> None:
        """Return once the clock has been advanced ``seconds`` past now."""
        if seconds <= 0:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        deadline = self.now + timedelta(seconds=seconds)
        heapq.heappush(self._sleepers, (deadline, next(self._order), waiter))
        await waiter

    @property
    def waiting(self) -> int:
        """How many waits are pending, so a test can advance once the bank has scheduled."""
        return sum(1 for _, _, waiter in self._sleepers if not waiter.done())
