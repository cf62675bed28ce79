"""Paging ``GET /v1/events?after=`` never skips an event, even across two hub processes.

The danger: event numbers taken from a sequence when the row is inserted. Process A
inserts event 1 and waits (here: on the audit head, held by a third connection);
process B inserts event 2 and commits. A portal reading now sees event 2 and asks for
what comes after it; when A commits, event 1 is behind the portal's cursor for good.
The ledger numbers events under the audit head's lock instead, so numbers follow
commit order.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from payhub.domain.clock import system_clock
from payhub.service.events import events_page
from payhub.service.unit_of_work import UnitOfWork
from payhub.store.engine import create_engine
from payhub.store.ledger import Ledger

PORTAL = "gap-portal"


def emitting(name: str, *, audited: bool) -> Callable[[UnitOfWork], Awaitable[str]]:
    async def unit(work: UnitOfWork) -> str:
        if audited:
            work.audit(actor="test", action=f"emitted-{name}")
        return work.emit(portal_id=PORTAL, type="payment.succeeded", payment_id=None, data={})

    return unit


async def waiting_on_locks(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int((await conn.execute(query)).scalar_one())


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the ledgers never reached the expected state")


class HeadHolder:
    """A third connection holding the write lock the ledgers need before numbering events."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._pg: Any = None
        self._sqlite: sqlite3.Connection | None = None

    async def hold(self) -> None:
        if self.engine.dialect.name == "postgresql":
            self._pg = await self.engine.connect()
            await self._pg.begin()
            await self._pg.execute(text("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE"))
        else:
            path = make_url(str(self.engine.url)).database
            assert path
            self._sqlite = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._sqlite.execute("BEGIN IMMEDIATE")

    async def release(self) -> None:
        if self._pg is not None:
            await self._pg.rollback()
            await self._pg.close()
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()


async def test_an_event_committed_late_is_not_skipped(database_url: str) -> None:
    engines = [create_engine(database_url), create_engine(database_url)]
    first, second = (Ledger(engine, system_clock) for engine in engines)
    await first.start()
    await second.start()
    holder = HeadHolder(engines[0])
    postgres = engines[0].dialect.name == "postgresql"
    try:
        await holder.hold()
        late = asyncio.create_task(first.run(emitting("late", audited=True)))
        if postgres:  # process A is inside its transaction, waiting on the head
            await until(lambda: _at_least(waiting_on_locks(engines[0]), 1))
        early = asyncio.create_task(second.run(emitting("early", audited=False)))
        if postgres:  # process B either committed or waits behind A
            await until(lambda: _done_or_waiting(early, engines[0]))
        else:  # SQLite: both wait for the write lock, whichever way they are scheduled
            await asyncio.sleep(0.2)
        seen, _ = await events_page(first, PORTAL, after=None, limit=100)
        await holder.release()
        ids = {await late, await early}
        cursor = seen[-1]["id"] if seen else None
        rest, _ = await events_page(first, PORTAL, after=cursor, limit=100)
    finally:
        await first.close()
        await second.close()
        for engine in engines:
            await engine.dispose()
    assert {e["id"] for e in seen + rest} == ids  # nothing skipped by a portal paging on


async def _at_least(count: Awaitable[int], wanted: int) -> bool:
    return await count >= wanted


async def _done_or_waiting(task: asyncio.Task[str], engine: AsyncEngine) -> bool:
    return task.done() or await waiting_on_locks(engine) >= 2


async def test_events_are_numbered_in_commit_order_by_two_processes(database_url: str) -> None:
    """Many events from two ledgers at once: paging in small pages sees each exactly once."""
    engines = [create_engine(database_url), create_engine(database_url)]
    ledgers = [Ledger(engine, system_clock) for engine in engines]
    for ledger in ledgers:
        await ledger.start()
    seen: list[str] = []
    stop = asyncio.Event()

    async def portal() -> None:
        cursor = None
        while True:
            done = stop.is_set()
            page, _ = await events_page(ledgers[0], PORTAL, after=cursor, limit=7)
            seen.extend(e["id"] for e in page)
            cursor = page[-1]["id"] if page else cursor
            if done and not page:
                return
            await asyncio.sleep(0)

    try:
        reader = asyncio.create_task(portal())
        emitted = await asyncio.gather(
            *(ledgers[i % 2].run(emitting(f"e{i}", audited=bool(i % 3))) for i in range(200))
        )
        stop.set()
        await reader
    finally:
        for ledger in ledgers:
            await ledger.close()
        for engine in engines:
            await engine.dispose()
    assert sorted(seen) == sorted(emitted)
