"""Database engines: SQLite tuned for durable commits, PostgreSQL through asyncpg."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


class InlineSqliteConnection(aiosqlite.Connection):
    """aiosqlite's interface with sqlite3's speed: statements run on the event loop.

    A statement on a local SQLite file takes microseconds, while aiosqlite's hand-off to
    its worker thread and back costs about a hundred (measured: ``SELECT 1`` 1.2 µs
    inline, 115 µs through the thread). Only the calls that can wait on the disk or on
    another process's lock run in a thread: connecting, ``BEGIN IMMEDIATE`` (which takes
    the write lock) and ``COMMIT`` (which flushes to disk). SQLAlchemy
    never uses one connection from two tasks at once, so the thread and the loop never
    touch it together.
    """

    def __await__(self) -> Any:
        return self._connect().__await__()

    async def _connect(self) -> InlineSqliteConnection:
        if self._connection is None:
            self._connection = await asyncio.to_thread(self._connector)
        return self

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        if args and isinstance(args[0], str) and _takes_write_lock(args[0]):
            return await asyncio.to_thread(partial(fn, *args, **kwargs))
        return fn(*args, **kwargs)

    @property
    def sqlite(self) -> sqlite3.Connection:
        """The ``sqlite3`` connection, for statements run inline (``payhub.store.prepared``)."""
        connection = self._connection
        if connection is None:
            raise ValueError("Connection closed")
        return connection

    async def commit(self) -> None:
        await asyncio.to_thread(self._conn.commit)

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._running = False

    def stop(self) -> None:
        """There is no worker thread to stop; closing is all there is."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._running = False


def _takes_write_lock(sql: str) -> bool:
    """``BEGIN IMMEDIATE`` / ``EXCLUSIVE`` may wait for another process; ``BEGIN`` never does."""
    words = sql.split(None, 2)
    return len(words) >= 2 and words[0].upper() == "BEGIN" and words[1].upper() != "DEFERRED"


def _inline_sqlite_creator(path: str) -> Callable[[], Any]:
    def connector() -> sqlite3.Connection:
        # isolation_level=None: the driver leaves transactions to the "begin" hook below.
        return sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)

    async def create() -> InlineSqliteConnection:
        connection = InlineSqliteConnection(connector, 64)
        return await connection._connect()

    return create


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; SQLite gets WAL, ``synchronous=FULL`` and ``BEGIN IMMEDIATE``.

    ``synchronous=FULL`` makes every commit survive a power cut, which is what a ``201``
    to a portal or a ``00`` to a bank promises. ``BEGIN IMMEDIATE`` takes the write lock
    when a write transaction starts, so two hub processes sharing one SQLite file queue
    up instead of failing half-way with ``database is locked``.
    """
    if url.startswith("sqlite"):
        path = make_url(url).database or ""
        engine = create_async_engine(
            url,
            async_creator=_inline_sqlite_creator(path),
            pool_size=8,
            max_overflow=8,
            **kwargs,
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Transaction control belongs to the "begin" hook below, not to the driver.
            if dbapi_connection.isolation_level is not None:
                dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(connection: Any) -> None:
            mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
            connection.exec_driver_sql(f"BEGIN {mode}")

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, **kwargs)


@contextlib.asynccontextmanager
async def writing_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection whose transactions take SQLite's write lock when they begin.

    Statements run inline on the event loop (``InlineSqliteConnection``); only ``BEGIN
    IMMEDIATE`` and ``COMMIT`` wait in a thread. A *deferred* transaction that writes
    beside the running ledger would wait for the lock inline, blocking the very loop the
    ledger needs to commit: the loop stands still until the busy timeout. Code that
    writes outside the ledger (a reconciliation run, a test's setup) uses this instead
    of ``engine.begin()``. On PostgreSQL it is a plain connection.
    """
    async with engine.connect() as conn:
        yield await conn.execution_options(sqlite_begin="IMMEDIATE")
