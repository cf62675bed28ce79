"""Time as the hub sees it: an injectable clock and the Vietnamese business calendar."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

VIETNAM = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")
"""Asia/Ho_Chi_Minh has been UTC+07:00 without daylight saving since 1975."""

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


def to_vietnam(moment: datetime) -> datetime:
    return moment.astimezone(VIETNAM)


def rfc3339(moment: datetime | None) -> str | None:
    """RFC 3339 with the ``+07:00`` offset, as the contract requires, to the second."""
    if moment is None:
        return None
    return to_vietnam(moment).replace(microsecond=0).isoformat()


class FakeClock:
    """A clock that moves only when told to; for tests and the simulated demo day."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 27, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
