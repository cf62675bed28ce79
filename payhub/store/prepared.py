"""The hot path's statements on SQLite, run straight on the connection's ``sqlite3`` handle.

Every statement a confirmation or a read sends on SQLite takes a few microseconds in
``sqlite3``, and five to ten times as long on its way through SQLAlchemy's async adapter
(an execution context, a greenlet switch, a cursor wrapper and a result object per
statement: about 50 µs on the bench machine against 6 µs here). A ``Prepared`` statement
is still declared once in SQLAlchemy Core, so it has one definition and one rendering: it
is compiled once for SQLite into its SQL text, the order of its parameters, and the type
processors of its parameters and columns (``UtcDateTime`` in, aware datetimes out), then
run on the ``sqlite3`` connection that SQLAlchemy has checked out for the same
transaction. On PostgreSQL ``execute`` is SQLAlchemy's own: there the network round trip
is the cost, not the Python around it.

Statements run inline on the event loop, as every SQLite statement of the hub does
(``payhub.store.engine.InlineSqliteConnection``): a read never waits for a lock in WAL
mode, and a write runs inside the ledger's ``BEGIN IMMEDIATE`` transaction, which already
holds the write lock.

``observers`` are told every statement sent this way, as SQLAlchemy's
``before_cursor_execute`` event is told the others (the query-plan tests listen to both).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from payhub.store.engine import InlineSqliteConnection

Observer = Callable[[str, Sequence[Any]], None]
observers: list[Observer] = []
"""Called with (SQL, parameters) before a statement runs on the fast path."""

Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    slots: tuple[tuple[str | None, Any], ...]
    """Per ``?``: (parameter name, its bind processor), or (``None``, a literal's value)."""
    columns: tuple[str, ...]
    results: tuple[Callable[[Any], Any] | None, ...]


class Prepared:
    """One Core statement, compiled for SQLite on first use; see the module docstring."""

    __slots__ = ("_sqlite", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._sqlite: _Compiled | None = None

    def _compiled(self, dialect: Dialect) -> _Compiled:
        found = self._sqlite
        if found is None:
            found = self._sqlite = _compile(self.statement, dialect)
        return found

    async def rows(self, conn: AsyncConnection, parameters: Mapping[str, Any]) -> list[Row]:
        """Every row, as a mapping of column name to value (processed as Core would)."""
        if conn.dialect.name != "sqlite":
            result = await conn.execute(self.statement, dict(parameters))
            return [dict(row) for row in result.mappings()]
        compiled = self._compiled(conn.dialect)
        cursor = _run(conn, compiled, parameters)
        columns, results = compiled.columns, compiled.results
        found: list[Row] = []
        for raw in cursor.fetchall():
            found.append(
                {
                    name: value if process is None or value is None else process(value)
                    for name, process, value in zip(columns, results, raw, strict=True)
                }
            )
        return found

    async def first(self, conn: AsyncConnection, parameters: Mapping[str, Any]) -> Row | None:
        found = await self.rows(conn, parameters)
        return found[0] if found else None

    async def rowcount(self, conn: AsyncConnection, parameters: Mapping[str, Any]) -> int:
        """Run a write; the number of rows it changed."""
        # A write inline only where the write lock is already held (the ledger's BEGIN
        # IMMEDIATE): elsewhere SQLAlchemy's path lets the driver wait for it in a thread.
        if conn.dialect.name != "sqlite" or not _driver(conn).holds_write_lock:
            result = await conn.execute(self.statement, dict(parameters))
            return int(result.rowcount)
        return int(_run(conn, self._compiled(conn.dialect), parameters).rowcount)


def _compile(statement: Executable, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    sql: str = compiled.string
    slots: list[tuple[str | None, Any]] = []
    for name in compiled.positiontup or ():
        bind = compiled.binds[name]
        # The dialect's own variant of the type (SQLite keeps DATETIME as text in one
        # format): the processor SQLAlchemy itself would apply.
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind.required:
            if bind.expanding:
                raise ValueError(f"{name}: a list parameter cannot be prepared")
            slots.append((name, process))
            continue
        literals = list(bind.effective_value) if bind.expanding else [bind.effective_value]
        if bind.expanding:  # a literal list (``IN ('a', 'b')``): one ``?`` per value
            marks = ", ".join("?" * len(literals))
            sql = sql.replace(f"__[POSTCOMPILE_{name}]", marks, 1)
        slots.extend((None, v if process is None else process(v)) for v in literals)
    selected = getattr(statement, "selected_columns", None)
    columns: tuple[str, ...] = ()
    results: tuple[Callable[[Any], Any] | None, ...] = ()
    if selected is not None and getattr(statement, "is_select", False):
        columns = tuple(column.key for column in selected)
        results = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in selected
        )
    return _Compiled(sql, tuple(slots), columns, results)


def _run(conn: AsyncConnection, compiled: _Compiled, parameters: Mapping[str, Any]) -> Any:
    values = [
        value if name is None else parameters[name] if value is None else value(parameters[name])
        for name, value in compiled.slots
    ]
    for observer in observers:
        observer(compiled.sql, values)
    return sqlite_handle(conn).execute(compiled.sql, values)


def sqlite_handle(conn: AsyncConnection) -> sqlite3.Connection:
    """The ``sqlite3`` connection under ``conn`` (checked out: no I/O to get it)."""
    return _driver(conn).sqlite


def _driver(conn: AsyncConnection) -> InlineSqliteConnection:
    driver: Any = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr]
    return driver  # type: ignore[no-any-return]
