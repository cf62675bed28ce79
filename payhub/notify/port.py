"""What the delivery worker needs from storage, as a protocol.

The worker never writes SQL: it claims due events, reports what each attempt gave and
asks for endpoints to be disabled. ``payhub.store.outbox.LedgerOutbox`` implements it
on the ledger; tests may give the worker any other implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class DueEvent:
    """An outbox event claimed for one attempt, numbered ``attempt`` (1 for the first)."""

    id: str
    seq: int
    portal_id: str
    type: str
    payload: str
    created_at: datetime
    attempt: int


@dataclass(frozen=True)
class AttemptOutcome:
    """What one attempt gave, and what happens to its event next.

    ``state`` is ``delivered``, ``pending`` (tried again at ``next_attempt_at``) or
    ``dead``; ``gone`` says the portal answered ``410`` and its endpoint is disabled.
    """

    event: DueEvent
    started_at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None
    state: str
    next_attempt_at: datetime | None
    gone: bool = False

    @property
    def outcome(self) -> str:
        if self.state == "delivered":
            return "delivered"
        return "gone" if self.gone else "failed"


class Outbox(Protocol):
    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[DueEvent]:
        """Due events of enabled endpoints, each claimed by this caller alone until
        ``lease_until`` (then, if never finished, it is due again: a crash loses nothing)."""
        ...

    async def finish(self, outcomes: list[AttemptOutcome]) -> None:
        """Record the attempts and move their events on, unless the claim was lost."""
        ...
