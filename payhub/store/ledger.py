"""The ledger: every write of the hub goes through here, in group commits.

Concurrent requests hand the ledger a *unit of work* (an async function of a
``Transaction``). One background task collects the units waiting at that moment, runs
them one after another inside a single database transaction, appends their audit entries
to the hash chain and their portal events to the outbox, commits once, and only then
answers each caller. A portal's ``201`` or a bank's ``00`` is therefore never sent before
its commit, while hundreds of requests share one disk flush.

Rules for units:

- a unit only touches the database through ``tx.conn``, ``tx.audit`` and ``tx.emit``;
  no HTTP, no sleeping: it may be run twice (see below);
- a unit may raise ``ProblemError`` only *before* its first write: it is then dropped
  from the batch with its error and the batch goes on;
- a unit that finds a row changed by another hub process raises ``LostRace``; the
  batch is rolled back and run again (so are deadlocks and serialization failures);
- any other exception rolls the whole batch back, and every unit of it is run again in
  a transaction of its own, so one bad unit never fails its neighbours.

The audit chain head lives in ``audit_head``; it is read (``FOR UPDATE`` on PostgreSQL,
under ``BEGIN IMMEDIATE`` on SQLite) just before the chain is extended, so several hub
processes extend one chain without forks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import structlog
from sqlalchemy import Table, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payhub.domain.clock import Clock
from payhub.domain.ids import new_id
from payhub.errors import PayhubError, ProblemError
from payhub.store.sql import insert_ignore
from payhub.store.tables import audit_head, audit_log, events

T = TypeVar("T")
Unit = Callable[["Transaction"], Awaitable[T]]

GENESIS_HASH = "0" * 64
MAX_BATCH = 256

log = structlog.get_logger(__name__)


class LedgerClosed(PayhubError):
    """The ledger no longer takes work: the hub is shutting down."""


class LostRace(PayhubError):
    """A unit found a row changed under it by another hub process; it is run again.

    Units raise it from guarded updates (``UPDATE … WHERE status = <seen>`` touching no
    row). The retry reads the row afresh and decides again, so the unit's effect still
    happens at most once.
    """


RACE_RETRIES = 5
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock


def _lost_race(exc: BaseException) -> bool:
    if isinstance(exc, LostRace):
        return True
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        return state in _RETRYABLE_SQLSTATES
    return False


@dataclass
class AuditEntry:
    at: datetime
    actor: str
    action: str
    payment_id: str | None
    from_status: str | None
    to_status: str | None
    detail: dict[str, Any]


def chain_hash(prev_hash: str, seq: int, entry: AuditEntry) -> str:
    """The hash linking one audit entry to the one before it."""
    record = json.dumps(
        [
            seq,
            entry.at.isoformat(),
            entry.actor,
            entry.action,
            entry.payment_id,
            entry.from_status,
            entry.to_status,
            entry.detail,
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(f"{prev_hash}|{record}".encode()).hexdigest()


@dataclass
class Claim:
    """A unique row a unit wants, and the rows that come with it if it gets it.

    Whether the claim was won is known once the batch is flushed: ``won`` is read by
    the caller after ``Ledger.run`` returns, never inside the unit.
    """

    table: Table
    row: dict[str, Any]
    rows: list[tuple[Table, dict[str, Any]]]
    audit: list[AuditEntry]
    won: bool = False

    @property
    def key(self) -> tuple[Any, ...]:
        return tuple(self.row[c.name] for c in self.table.primary_key.columns)


@dataclass
class Transaction:
    """What a unit of work may use: the connection, the audit trail and the outbox."""

    conn: AsyncConnection
    clock: Clock
    _audit: list[AuditEntry] = field(default_factory=list)
    _events: list[dict[str, Any]] = field(default_factory=list)
    _claims: list[Claim] = field(default_factory=list)

    def claim(
        self,
        table: Table,
        row: dict[str, Any],
        *,
        then: list[tuple[Table, dict[str, Any]]] = (),  # type: ignore[assignment]
        audit: list[AuditEntry] = (),  # type: ignore[assignment]
    ) -> Claim:
        """Insert ``row`` unless its primary key exists; if it is inserted, so are ``then``.

        Claims of one batch are written together, one multi-row ``INSERT … ON CONFLICT
        DO NOTHING RETURNING`` per table: this is what makes a create cost a fraction of
        a statement instead of two round trips.
        """
        claim = Claim(table, row, list(then), list(audit))
        self._claims.append(claim)
        return claim

    def audit_entry(
        self,
        *,
        actor: str,
        action: str,
        payment_id: str | None = None,
        from_status: str | None = None,
        to_status: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """An audit entry to hand to ``claim``: written only if the claim is won."""
        return AuditEntry(
            at=self.clock(),
            actor=actor,
            action=action,
            payment_id=payment_id,
            from_status=from_status,
            to_status=to_status,
            detail=detail or {},
        )

    def audit(
        self,
        *,
        actor: str,
        action: str,
        payment_id: str | None = None,
        from_status: str | None = None,
        to_status: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append an entry to the hash-chained audit trail (written with the batch)."""
        self._audit.append(
            self.audit_entry(
                actor=actor,
                action=action,
                payment_id=payment_id,
                from_status=from_status,
                to_status=to_status,
                detail=detail,
            )
        )

    def emit(
        self, *, portal_id: str, type: str, payment_id: str | None, data: dict[str, Any]
    ) -> str:
        """Put a portal event into the outbox, in this same transaction; returns its id."""
        event_id = new_id("evt")
        now = self.clock()
        self._events.append(
            {
                "id": event_id,
                "portal_id": portal_id,
                "type": type,
                "payment_id": payment_id,
                "payload": json.dumps(data, ensure_ascii=False, separators=(",", ":")),
                "created_at": now,
                "delivery_state": "pending",
                "attempts": 0,
                "next_attempt_at": now,
            }
        )
        return event_id

    async def _flush_claims(self) -> None:
        by_table: dict[Table, list[Claim]] = {}
        for claim in self._claims:
            by_table.setdefault(claim.table, []).append(claim)
        for table, claims in by_table.items():
            unique: dict[tuple[Any, ...], Claim] = {}
            for claim in claims:  # the first claim of a key in the batch is the only candidate
                unique.setdefault(claim.key, claim)
            result = await self.conn.execute(
                insert_ignore(self.conn, table), [c.row for c in unique.values()]
            )
            for returned in result.all():
                unique[tuple(returned)].won = True
        dependents: dict[Table, list[dict[str, Any]]] = {}
        for claim in self._claims:
            if claim.won:
                for table, row in claim.rows:
                    dependents.setdefault(table, []).append(row)
                self._audit.extend(claim.audit)
        for table, rows in dependents.items():
            await self.conn.execute(insert(table), rows)

    async def _flush(self) -> None:
        if self._claims:
            await self._flush_claims()
        if self._events:
            await self.conn.execute(insert(events), self._events)
        if self._audit:
            head_query = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
            if self.conn.dialect.name == "postgresql":
                head_query = head_query.with_for_update()
            head = (await self.conn.execute(head_query)).one()
            seq, prev = int(head.seq), str(head.hash)
            rows = []
            for entry in self._audit:
                seq += 1
                digest = chain_hash(prev, seq, entry)
                rows.append(
                    {
                        "seq": seq,
                        "at": entry.at,
                        "actor": entry.actor,
                        "action": entry.action,
                        "payment_id": entry.payment_id,
                        "from_status": entry.from_status,
                        "to_status": entry.to_status,
                        "detail": json.dumps(
                            entry.detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False
                        ),
                        "prev_hash": prev,
                        "hash": digest,
                    }
                )
                prev = digest
            await self.conn.execute(insert(audit_log), rows)
            await self.conn.execute(
                update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=prev)
            )


@dataclass
class _Pending:
    unit: Unit[Any]
    future: asyncio.Future[Any]


class Ledger:
    """Group commit of units of work; see the module docstring."""

    def __init__(self, engine: AsyncEngine, clock: Clock, *, max_batch: int = MAX_BATCH) -> None:
        self.engine = engine
        self.clock = clock
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0
        self.units = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="payhub-ledger")

    async def close(self) -> None:
        """Finish what was handed in, then stop taking work."""
        self._closed = True
        if self._task is not None:
            await self._queue.put(_Pending(_stop, asyncio.get_running_loop().create_future()))
            await self._task
            self._task = None

    async def run(self, unit: Unit[T]) -> T:
        """Run ``unit`` in the next group commit; returns once its effects are durable."""
        if self._closed or self._task is None:
            raise LedgerClosed("the ledger is not running")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(unit, future))
        return await future

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stop = any(p.unit is _stop for p in batch)
            work = [p for p in batch if p.unit is not _stop]
            if work:
                await self._commit_batch(work)
            if stop:
                for p in batch:
                    if p.unit is _stop:
                        p.future.set_result(None)
                while not self._queue.empty():
                    left = self._queue.get_nowait()
                    if not left.future.done():
                        left.future.set_exception(LedgerClosed("the hub is shutting down"))
                return

    async def _commit_batch(self, batch: list[_Pending]) -> None:
        self.batches += 1
        self.units += len(batch)
        try:
            results = await self._transaction(batch)
        except Exception as exc:  # one unit poisoned the batch: run each alone
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            log.warning("ledger_batch_retried_singly", units=len(batch), error=type(exc).__name__)
            for pending in batch:
                try:
                    (outcome,) = await self._transaction([pending])
                except Exception as single_exc:
                    outcome = single_exc
                _settle(pending, outcome)
            return
        for pending, outcome in zip(batch, results, strict=True):
            _settle(pending, outcome)

    async def _transaction(self, batch: list[_Pending]) -> list[Any]:
        """One attempt after another while the batch only lost a race to another process."""
        for attempt in range(RACE_RETRIES):
            try:
                return await self._attempt(batch)
            except Exception as exc:
                if not _lost_race(exc) or attempt == RACE_RETRIES - 1:
                    raise
                log.info("ledger_batch_lost_race", units=len(batch), attempt=attempt + 1)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, batch: list[_Pending]) -> list[Any]:
        async with self.engine.connect() as raw_conn:
            conn = await raw_conn.execution_options(sqlite_begin="IMMEDIATE")
            async with conn.begin():
                tx = Transaction(conn=conn, clock=self.clock)
                results: list[Any] = []
                for pending in batch:
                    try:
                        results.append(await pending.unit(tx))
                    except ProblemError as declined:
                        results.append(declined)
                await tx._flush()
            return results


def _settle(pending: _Pending, outcome: Any) -> None:
    if pending.future.done():
        return
    if isinstance(outcome, BaseException):
        pending.future.set_exception(outcome)
    else:
        pending.future.set_result(outcome)


async def _stop(_tx: Transaction) -> None:
    """Marker unit: the ledger stops after the batch that holds it."""
