"""The ledger: every write of the hub goes through here, in group commits.

The ledger is the hub's ``UnitRunner`` (``payhub.service.unit_of_work``). Concurrent
requests hand it *units of work* (async functions of a ``UnitOfWork``). One background
task collects the units waiting at that moment, runs them one after another inside a
single database transaction, appends their audit entries to the hash chain and their
portal events to the outbox, commits once, and only then answers each caller. A portal's
``201`` or a bank's ``00`` is therefore never sent before its commit, while hundreds of
requests share one disk flush.

What keeps units apart inside one transaction:

- each unit gets its own ``LedgerUnitOfWork``; its audit entries, events and claims join
  the batch only if it returns;
- on SQLite its first write takes a SAVEPOINT (units that only read or only claim need
  none); a unit that raises, whatever it raises and after however many writes, is rolled
  back to it and answered with its exception while its neighbours go on. On PostgreSQL,
  where a savepoint costs two round trips per writing unit, none is taken: a unit that
  raises after writing has the whole batch rolled back, is answered with its exception,
  and the others run again in a new transaction without it. Either way nothing of it is
  committed. Repositories write only through ``LedgerUnitOfWork.writing()``, so no
  write escapes this;
- a unit that raises ``LostRace`` (a guarded update found the row changed by another
  hub process) has the batch rolled back and run again (so do deadlocks and
  serialization failures);
- a unit that fails before any write with anything but a ``ProblemError`` may have left
  the transaction unusable (PostgreSQL aborts it on a failed statement): the batch is
  rolled back and every unit of it is run again in a transaction of its own, so one bad
  unit never fails its neighbours.

Claims (unique rows such as idempotency keys and nonces) are written at the end of the
batch, one multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING`` per table and level
(a claim made ``after`` another is tried only if that one was won).

The audit chain head lives in ``audit_head``, with the last event sequence number. It is
read (``FOR UPDATE`` on PostgreSQL, under ``BEGIN IMMEDIATE`` on SQLite) before events
and audit entries are written, and held until commit: several hub processes extend one
chain without forks, and events are numbered in the order they commit, so a portal
paging ``GET /v1/events?after=`` never skips one committed late.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

import structlog
from sqlalchemy import Table, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payhub.domain.clock import Clock
from payhub.domain.ids import new_id
from payhub.errors import PayhubError, ProblemError
from payhub.service.unit_of_work import AuditEntry, Claim, LostRace, Reading, UnitOfWork
from payhub.store.engine import connection
from payhub.store.prepared import sqlite_handle
from payhub.store.repository import (
    SqlEvents,
    SqlIdempotencyKeys,
    SqlNonces,
    SqlPayments,
    SqlRefunds,
)
from payhub.store.sql import insert_ignore
from payhub.store.tables import audit_head, audit_log, events

T = TypeVar("T")
StoreUnit = Callable[["LedgerUnitOfWork"], Awaitable[T]]

GENESIS_HASH = "0" * 64
MAX_BATCH = 256

log = structlog.get_logger(__name__)

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "Ledger",
    "LedgerClosed",
    "LedgerUnitOfWork",
    "LostRace",
    "chain_hash",
]


class LedgerClosed(PayhubError):
    """The ledger no longer takes work: the hub is shutting down."""


class ReadOnlyUnit(PayhubError):
    """A read-only query tried to write; reads run outside the group commit."""


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


@cache
def _primary_key(table: Table) -> tuple[str, ...]:
    return tuple(column.name for column in table.primary_key.columns)


@dataclass(eq=False, slots=True)
class PendingClaim:
    """A unique row a unit wants, and the rows that come with it if it gets it.

    ``won`` is set when the batch is flushed: the caller reads it after ``Ledger.run``
    returns, never inside the unit.
    """

    table: Table
    row: dict[str, Any]
    rows: Sequence[tuple[Table, dict[str, Any]]]
    audit: Sequence[AuditEntry]
    after: PendingClaim | None = None
    won: bool = False

    @property
    def key(self) -> tuple[Any, ...]:
        row = self.row
        return tuple(row[name] for name in _primary_key(self.table))

    @property
    def level(self) -> int:
        depth, parent = 0, self.after
        while parent is not None:
            depth, parent = depth + 1, parent.after
        return depth


class LedgerUnitOfWork:
    """One unit's view of its batch's transaction: the ``UnitOfWork`` the ledger hands out."""

    __slots__ = (
        "_audit",
        "_claims",
        "_clock",
        "_conn",
        "_events",
        "_read_only",
        "_savepoint",
    )

    def __init__(self, conn: AsyncConnection, clock: Clock, *, read_only: bool = False) -> None:
        self._conn = conn
        self._clock = clock
        self._read_only = read_only
        self._savepoint: _Savepoint | None = None
        self._audit: list[AuditEntry] = []
        self._events: list[dict[str, Any]] = []
        self._claims: list[PendingClaim] = []

    # -- the repositories (made on use: a create needs two of the five) ----------------

    @property
    def payments(self) -> SqlPayments:
        return SqlPayments(self)

    @property
    def idempotency_keys(self) -> SqlIdempotencyKeys:
        return SqlIdempotencyKeys(self)

    @property
    def refunds(self) -> SqlRefunds:
        return SqlRefunds(self)

    @property
    def events(self) -> SqlEvents:
        return SqlEvents(self)

    @property
    def nonces(self) -> SqlNonces:
        return SqlNonces(self)

    # -- what repositories use ---------------------------------------------------------

    def reading(self) -> AsyncConnection:
        return self._conn

    async def writing(self) -> AsyncConnection:
        """The connection, once this unit's savepoint is taken (on its first write)."""
        if self._read_only:
            raise ReadOnlyUnit("a read-only query cannot write")
        if self._savepoint is None:
            self._savepoint = await _Savepoint.take(self._conn)
        return self._conn

    def add_claim(
        self,
        table: Table,
        row: dict[str, Any],
        *,
        then: Sequence[tuple[Table, dict[str, Any]]] = (),
        audit: Sequence[AuditEntry] = (),
        after: Claim | None = None,
    ) -> PendingClaim:
        if self._read_only:
            raise ReadOnlyUnit("a read-only query cannot claim")
        if after is not None and not isinstance(after, PendingClaim):
            raise TypeError("a claim can only follow a claim of the same ledger")
        claim = PendingClaim(table, row, then, audit, after)
        self._claims.append(claim)
        return claim

    # -- the audit trail and the outbox --------------------------------------------------

    def now(self) -> datetime:
        return self._clock()

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
        return AuditEntry(
            at=self._clock(),
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
        if self._read_only:
            raise ReadOnlyUnit("a read-only query cannot audit")
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
        if self._read_only:
            raise ReadOnlyUnit("a read-only query cannot emit events")
        event_id = new_id("evt")
        now = self._clock()
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

    # -- how the ledger ends a unit ------------------------------------------------------

    @property
    def wrote(self) -> bool:
        return self._savepoint is not None

    @property
    def undoable(self) -> bool:
        """Its writes can be rolled back alone (a real savepoint, SQLite's)."""
        return self._savepoint is not None and self._savepoint.undoable

    async def release(self) -> None:
        if self._savepoint is not None:
            await self._savepoint.release()

    def keep(self, batch: _Batch) -> None:
        batch.claims += self._claims
        batch.audit += self._audit
        batch.events += self._events

    async def discard(self) -> None:
        if self._savepoint is not None:
            await self._savepoint.rollback()


class _Savepoint:
    """Where a unit's writes start, so that a unit that raises is undone.

    On SQLite a real savepoint, its three statements sent straight to the ``sqlite3``
    connection, inline as every SQLite statement of the hub runs: a few microseconds,
    where SQLAlchemy's ``begin_nested()`` and its commit cost about fifteen times as much
    through the async adapter (measured: 14 µs against 98 µs a unit). The outer
    transaction is SQLAlchemy's; a savepoint inside it, taken and ended by the same
    unit, leaves its bookkeeping as it was.

    On PostgreSQL none is taken: ``SAVEPOINT`` and ``RELEASE`` are two round trips to the
    server for every writing unit (two of a confirmation's five), while a unit that raises
    after writing is rare. Such a unit makes the ledger roll the whole batch back and run
    the others again without it (``_WroteThenFailed``): the same outcome, paid for only
    when it happens.
    """

    __slots__ = ("_sqlite",)

    NAME = "payhub_unit"

    def __init__(self, sqlite: Any) -> None:
        self._sqlite = sqlite

    @property
    def undoable(self) -> bool:
        return self._sqlite is not None

    @classmethod
    async def take(cls, conn: AsyncConnection) -> _Savepoint:
        if conn.dialect.name != "sqlite":
            return cls(None)
        sqlite = sqlite_handle(conn)
        sqlite.execute(f"SAVEPOINT {cls.NAME}")
        return cls(sqlite)

    async def release(self) -> None:
        if self._sqlite is not None:
            self._sqlite.execute(f"RELEASE SAVEPOINT {self.NAME}")

    async def rollback(self) -> None:
        if self._sqlite is None:  # pragma: no cover - the ledger rolls the batch back instead
            raise AssertionError("no savepoint to roll back to")
        self._sqlite.execute(f"ROLLBACK TO SAVEPOINT {self.NAME}")
        self._sqlite.execute(f"RELEASE SAVEPOINT {self.NAME}")


class _WroteThenFailed(Exception):
    """A unit raised after writing where its writes cannot be undone alone (PostgreSQL)."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(f"unit {index} failed after writing")
        self.index = index
        self.error = error


@dataclass
class _Batch:
    """What the kept units of one transaction leave to write at its end."""

    conn: AsyncConnection
    claims: list[PendingClaim] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    async def flush(self) -> None:
        if self.claims:
            await self._flush_claims()
        if self.audit or self.events:
            await self._extend_chain_and_outbox()

    async def _flush_claims(self) -> None:
        levels: dict[int, list[PendingClaim]] = {}
        for claim in self.claims:
            levels.setdefault(claim.level, []).append(claim)
        for level in sorted(levels):
            by_table: dict[Table, dict[tuple[Any, ...], PendingClaim]] = {}
            for claim in levels[level]:
                if claim.after is not None and not claim.after.won:
                    continue
                # the first claim of a key in the batch is the only candidate
                by_table.setdefault(claim.table, {}).setdefault(claim.key, claim)
            for table, unique in by_table.items():
                result = await self.conn.execute(
                    insert_ignore(self.conn, table), [c.row for c in unique.values()]
                )
                for returned in result.all():
                    unique[tuple(returned)].won = True
        dependents: dict[Table, list[dict[str, Any]]] = {}
        won_audit: list[AuditEntry] = []
        for claim in self.claims:
            if claim.won:
                for table, row in claim.rows:
                    dependents.setdefault(table, []).append(row)
                won_audit.extend(claim.audit)
        for table, rows in dependents.items():
            await self.conn.execute(insert(table), rows)
        self.audit += won_audit

    async def _extend_chain_and_outbox(self) -> None:
        head_query = select(audit_head.c.seq, audit_head.c.hash, audit_head.c.event_seq).where(
            audit_head.c.id == 1
        )
        if self.conn.dialect.name == "postgresql":
            head_query = head_query.with_for_update()
        head = (await self.conn.execute(head_query)).one()
        seq, prev, event_seq = int(head.seq), str(head.hash), int(head.event_seq)
        if self.events:
            for event in self.events:
                event_seq += 1
                event["seq"] = event_seq
            await self.conn.execute(insert(events), self.events)
        if self.audit:
            rows = []
            for entry in self.audit:
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
            update(audit_head)
            .where(audit_head.c.id == 1)
            .values(seq=seq, hash=prev, event_seq=event_seq)
        )


@dataclass
class _Pending:
    unit: StoreUnit[Any]
    future: asyncio.Future[Any]


class Ledger:
    """Group commit of units of work; see the module docstring."""

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        *,
        max_batch: int = MAX_BATCH,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.max_batch = max_batch
        self.on_batch = on_batch
        """Told each batch's size (the ``payhub_ledger_batch_units`` histogram)."""
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

    async def run(self, unit: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        """Run ``unit`` in the next group commit; returns once its effects are durable."""
        return await self.run_in_store(unit)

    async def run_in_store(self, unit: StoreUnit[T]) -> T:
        """``run`` for the storage package's own units (pruning), which may use ``writing()``."""
        if self._closed or self._task is None:
            raise LedgerClosed("the ledger is not running")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(unit, future))
        return await future

    async def read(self, query: Callable[[Reading], Awaitable[T]]) -> T:
        """Run a read-only query on a connection of its own, outside the group commit."""
        async with connection(self.engine) as conn:
            return await query(LedgerUnitOfWork(conn, self.clock, read_only=True))

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
        if self.on_batch is not None:
            self.on_batch(len(batch))
        try:
            results = await self._transaction(batch)
        except _WroteThenFailed as failed:  # rolled back with the batch: the rest again
            _settle(batch[failed.index], failed.error)
            rest = batch[: failed.index] + batch[failed.index + 1 :]
            if rest:
                await self._commit_batch(rest)
            return
        except Exception as exc:  # one unit poisoned the batch: run each alone
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            log.warning("ledger_batch_retried_singly", units=len(batch), error=type(exc).__name__)
            for pending in batch:
                try:
                    (outcome,) = await self._transaction([pending])
                except _WroteThenFailed as failed:
                    outcome = failed.error
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
        async with connection(self.engine) as raw_conn:
            conn = await raw_conn.execution_options(sqlite_begin="IMMEDIATE")
            async with conn.begin():
                kept = _Batch(conn)
                results: list[Any] = []
                for pending in batch:
                    work = LedgerUnitOfWork(conn, self.clock)
                    try:
                        result = await pending.unit(work)
                    except Exception as exc:
                        if _lost_race(exc):
                            raise
                        if not (work.wrote or isinstance(exc, ProblemError)):
                            raise  # it may have left the transaction unusable
                        if work.wrote and not work.undoable:
                            raise _WroteThenFailed(len(results), exc) from exc
                        await work.discard()
                        results.append(exc)
                        continue
                    if work.wrote:
                        await work.release()
                    work.keep(kept)
                    results.append(result)
                await kept.flush()
            return results


def _settle(pending: _Pending, outcome: Any) -> None:
    if pending.future.done():
        return
    if isinstance(outcome, BaseException):
        pending.future.set_exception(outcome)
    else:
        pending.future.set_result(outcome)


async def _stop(_work: LedgerUnitOfWork) -> None:
    """Marker unit: the ledger stops after the batch that holds it."""
