"""On SQLite, waiting for the write lock never stalls the event loop.

Statements run inline on the loop (``InlineSqliteConnection``). A write that has to wait
for the lock (another process is writing) would stop every request of the hub until the
lock came free, so the ledger takes it with ``BEGIN IMMEDIATE`` in a thread. These tests
hold the lock from another connection and check that a write through a *deferred*
transaction (``engine.begin()``, the default) waits in a thread too: a coroutine of the
same loop runs meanwhile and is what lets the other writer finish.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from payhub.store.engine import create_engine

RELEASE_ANYWAY_AFTER = 10.0  # seconds: bounds the failing case, never reached when it passes


@pytest.fixture(name="engine")
async def _engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'lock.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE entries (n INTEGER)"))
    yield engine
    await engine.dispose()


def _hold_write_lock(path: str) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO entries VALUES (1)")
    return other


async def _write_while_locked(engine: AsyncEngine, write: str) -> bool:
    """Run ``write`` in a deferred transaction while another connection holds the lock.

    The other connection commits once a coroutine of this loop has run while the write
    waits (or after ``RELEASE_ANYWAY_AFTER`` seconds); returns whether the loop ran.
    """
    path = engine.url.database
    assert path is not None
    other = _hold_write_lock(path)
    loop_ran = threading.Event()

    def commit_when_the_loop_ran() -> bool:
        ran = loop_ran.wait(RELEASE_ANYWAY_AFTER)
        other.execute("COMMIT")
        other.close()
        return ran

    releasing = asyncio.ensure_future(asyncio.to_thread(commit_when_the_loop_ran))

    async def writer() -> None:
        async with engine.begin() as conn:
            await conn.execute(text(write))

    writing = asyncio.ensure_future(writer())
    await asyncio.sleep(0.05)  # the writer has reached its write and is waiting for the lock
    loop_ran.set()  # reached only if the loop is free while it waits
    await writing
    return await releasing


async def test_a_deferred_write_waits_for_the_lock_in_a_thread(engine: AsyncEngine) -> None:
    assert await _write_while_locked(engine, "INSERT INTO entries VALUES (2)")
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT n FROM entries ORDER BY n"))).scalars().all()
    assert stored == [1, 2]


async def test_every_new_transaction_waits_off_the_loop_again(engine: AsyncEngine) -> None:
    """The lock is released at commit: the next deferred transaction must not assume it."""
    assert await _write_while_locked(engine, "INSERT INTO entries VALUES (2)")
    assert await _write_while_locked(engine, "UPDATE entries SET n = n + 10 WHERE n = 2")
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT n FROM entries ORDER BY n"))).scalars().all()
    assert stored == [1, 1, 12]
