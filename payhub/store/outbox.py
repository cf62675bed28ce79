"""The outbox as the delivery worker sees it: claiming, recording attempts, replaying.

Claiming is what keeps one event with one worker at a time, across hub processes:

- on PostgreSQL the due rows are selected ``FOR UPDATE SKIP LOCKED``, so two workers
  polling at once take disjoint events;
- on SQLite the ledger's ``BEGIN IMMEDIATE`` makes the claim the only writer;
- on both, a claim moves ``next_attempt_at`` to the end of a lease and counts the
  attempt in ``attempts``. The lease is the claim: nobody else sees the event as due
  before it ends, and a worker that dies mid-delivery (SIGKILL) only delays the event
  to the lease's end. ``attempts`` is the claim token: an outcome is applied only while
  the event still has the attempt number it was claimed with, so a worker whose lease
  ran out can never overwrite its successor's result.

Every operation is a ledger unit, so it shares the group commit of the hub's other
writes and can later move under any other unit of work unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, select, update

from payhub.notify.port import AttemptOutcome, DueEvent
from payhub.store.engine import connection
from payhub.store.ledger import Ledger, LedgerUnitOfWork
from payhub.store.sql import insert_ignore
from payhub.store.tables import delivery_attempts, events, portal_endpoints

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


@dataclass
class ReplayReport:
    replayed: list[str] = field(default_factory=list)
    already_pending: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


class LedgerOutbox:
    """``payhub.notify.port.Outbox`` on the ledger's tables (see the module docstring)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[DueEvent]:
        if not await self._any_due(now):
            return []

        async def claim_unit(work: LedgerUnitOfWork) -> list[DueEvent]:
            conn = await work.writing()
            disabled = select(portal_endpoints.c.portal_id)
            query = (
                select(events)
                .where(
                    events.c.delivery_state == PENDING,
                    events.c.next_attempt_at <= now,
                    events.c.portal_id.not_in(disabled),
                )
                .order_by(events.c.next_attempt_at, events.c.seq)
                .limit(limit)
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True, of=events)
            rows = (await conn.execute(query)).mappings().all()
            if not rows:
                return []
            await conn.execute(
                update(events)
                .where(events.c.seq.in_([row["seq"] for row in rows]))
                .values(attempts=events.c.attempts + 1, next_attempt_at=lease_until)
            )
            return [
                DueEvent(
                    id=row["id"],
                    seq=int(row["seq"]),
                    portal_id=row["portal_id"],
                    type=row["type"],
                    payload=row["payload"],
                    created_at=row["created_at"],
                    attempt=int(row["attempts"]) + 1,
                )
                for row in rows
            ]

        return await self.ledger.run_in_store(claim_unit)

    async def _any_due(self, now: datetime) -> bool:
        """A plain read first: an idle poll never takes the write lock or joins a commit."""
        async with connection(self.ledger.engine) as conn:
            found = await conn.scalar(
                select(events.c.seq)
                .where(
                    events.c.delivery_state == PENDING,
                    events.c.next_attempt_at <= now,
                    events.c.portal_id.not_in(select(portal_endpoints.c.portal_id)),
                )
                .limit(1)
            )
        return found is not None

    async def finish(self, outcomes: list[AttemptOutcome]) -> None:
        if not outcomes:
            return

        async def finish_unit(work: LedgerUnitOfWork) -> None:
            conn = await work.writing()
            await conn.execute(
                update(events)
                .where(
                    and_(
                        events.c.id == bindparam("b_id"),
                        events.c.attempts == bindparam("b_attempt"),
                        events.c.delivery_state == PENDING,
                    )
                )
                .values(
                    delivery_state=bindparam("b_state"),
                    next_attempt_at=bindparam("b_next"),
                ),
                [
                    {
                        "b_id": o.event.id,
                        "b_attempt": o.event.attempt,
                        "b_state": o.state,
                        "b_next": o.next_attempt_at,
                    }
                    for o in outcomes
                ],
            )
            await conn.execute(
                delivery_attempts.insert(),
                [
                    {
                        "event_id": o.event.id,
                        "attempt": o.event.attempt,
                        "started_at": o.started_at,
                        "status_code": o.status_code,
                        "latency_ms": o.latency_ms,
                        "outcome": o.outcome,
                        "error": (o.error or None) and o.error[:255],
                    }
                    for o in outcomes
                ],
            )
            gone = {o.event.portal_id: o.started_at for o in outcomes if o.gone}
            for portal_id, at in gone.items():
                await conn.execute(
                    insert_ignore(conn, portal_endpoints),
                    {"portal_id": portal_id, "disabled_at": at, "reason": "answered 410 Gone"},
                )
                work.audit(
                    actor="hub",
                    action="endpoint_disabled",
                    detail={"portal_id": portal_id, "reason": "410 Gone"},
                )

        await self.ledger.run_in_store(finish_unit)

    async def disabled_endpoints(self) -> dict[str, datetime]:
        async def read_unit(work: LedgerUnitOfWork) -> dict[str, datetime]:
            conn = await work.writing()
            rows = await conn.execute(select(portal_endpoints))
            return {row.portal_id: row.disabled_at for row in rows}

        return await self.ledger.run_in_store(read_unit)

    async def enable_endpoint(self, portal_id: str, *, actor: str) -> bool:
        """Send to ``portal_id`` again; its waiting events become due now. Audited."""

        async def enable_unit(work: LedgerUnitOfWork) -> bool:
            conn = await work.writing()
            result = await conn.execute(
                delete(portal_endpoints).where(portal_endpoints.c.portal_id == portal_id)
            )
            if not result.rowcount:
                return False
            await conn.execute(
                update(events)
                .where(events.c.portal_id == portal_id, events.c.delivery_state == PENDING)
                .values(next_attempt_at=work.now())
            )
            work.audit(actor=actor, action="endpoint_enabled", detail={"portal_id": portal_id})
            return True

        return await self.ledger.run_in_store(enable_unit)

    async def dead_events(self) -> list[dict[str, Any]]:
        """The dead events, oldest first: what ``payhub events dead`` lists for replay."""

        async def read_unit(work: LedgerUnitOfWork) -> list[dict[str, Any]]:
            rows = await work.reading().execute(
                select(events.c.id, events.c.portal_id, events.c.type, events.c.created_at)
                .where(events.c.delivery_state == DEAD)
                .order_by(events.c.seq)
            )
            return [dict(row._mapping) for row in rows]

        return await self.ledger.run_in_store(read_unit)

    async def replay(
        self, *, actor: str, event_ids: Sequence[str] = (), dead: bool = False
    ) -> ReplayReport:
        """Deliver dead (or named, already delivered) events again, from a fresh schedule.

        The event keeps its id, so the portal's ``webhook-id`` dedup still recognises a
        copy it already has. Each replay is an audit entry naming the operator.
        """

        async def replay_unit(work: LedgerUnitOfWork) -> ReplayReport:
            conn = await work.writing()
            report = ReplayReport()
            query = select(events.c.id, events.c.payment_id, events.c.delivery_state)
            if dead:
                query = query.where(events.c.delivery_state == DEAD).order_by(events.c.seq)
            else:
                query = query.where(events.c.id.in_(list(event_ids)))
            found = {row.id: row for row in await conn.execute(query)}
            wanted = list(found) if dead else list(dict.fromkeys(event_ids))
            for event_id in wanted:
                row = found.get(event_id)
                if row is None:
                    report.unknown.append(event_id)
                    continue
                if row.delivery_state == PENDING:
                    report.already_pending.append(event_id)
                    continue
                await conn.execute(
                    update(events)
                    .where(events.c.id == event_id, events.c.delivery_state == row.delivery_state)
                    .values(delivery_state=PENDING, attempts=0, next_attempt_at=work.now())
                )
                work.audit(
                    actor=actor,
                    action="event_replayed",
                    payment_id=row.payment_id,
                    detail={"event_id": event_id, "was": row.delivery_state},
                )
                report.replayed.append(event_id)
            return report

        return await self.ledger.run_in_store(replay_unit)

    async def summary(self) -> dict[str, Any]:
        """Counts for an operator or the demo: events by state, attempts by outcome."""

        async def read_unit(work: LedgerUnitOfWork) -> dict[str, Any]:
            conn = await work.writing()
            states = await conn.execute(
                select(events.c.delivery_state, func.count()).group_by(events.c.delivery_state)
            )
            outcomes = await conn.execute(
                select(delivery_attempts.c.outcome, func.count()).group_by(
                    delivery_attempts.c.outcome
                )
            )
            retries = await conn.execute(
                select(func.count())
                .select_from(delivery_attempts)
                .where(delivery_attempts.c.attempt > 1)
            )
            return {
                "events": {str(state): int(n) for state, n in states},
                "attempts": {str(outcome): int(n) for outcome, n in outcomes},
                "retries": int(retries.scalar() or 0),
            }

        return await self.ledger.run_in_store(read_unit)
