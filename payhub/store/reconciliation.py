"""Reconciliation's SQL: staging statement lines in bulk and classifying them by joins.

The statement is matched where the payments are. Its lines are loaded into a temporary
table of the run's own connection (``reconciliation_staging``: no journal, no fsync, no
index to maintain while loading) in large batches through the driver (``executemany`` on
SQLite, ``COPY`` on PostgreSQL); then a handful of set-based statements give every line
its class (CONTRACT §5), by one join against ``payments`` on the bank reference, never one
query per line. The classified lines are copied into ``reconciliation_items`` (the run's
record and report) in a few large ``INSERT … SELECT``s, the hub's payments the statement
does not mention are added as ``missing_at_bank`` rows by another, and every row that
needs a person becomes an exception by a last one. Loading a million lines straight into
the indexed, journaled table took 18 s on the bench machine; this way the whole run takes
a few.

A payment's business day is the Asia/Ho_Chi_Minh day of its ``paid_at`` (of its
``created_at`` when it has none): a statement line for day D whose payment the hub has on
D-1 or D+1 crossed a cut-off and is ``previous_day`` / ``next_day``. A payment of day D
missing from D's statement is not ``missing_at_bank`` when a completed run of D-1 or D+1
for the same bank has a line for it (the other side of the same cut-off).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import chain
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from payhub.domain.clock import VIETNAM
from payhub.reconcile.entries import StatementEntry
from payhub.store.prepared import sqlite_handle
from payhub.store.tables import (
    UtcDateTime,
    payments,
    reconciliation_exceptions,
    reconciliation_items,
    reconciliation_resolutions,
    reconciliation_runs,
)

CLASSES = (
    "matched",
    "settled_by_statement",
    "missing_at_bank",
    "unknown_reference",
    "amount_mismatch",
    "duplicate",
    "status_mismatch",
    "previous_day",
    "next_day",
)
NO_EXCEPTION = ("matched", "settled_by_statement")

items = reconciliation_items
runs = reconciliation_runs
exceptions = reconciliation_exceptions
resolutions = reconciliation_resolutions

staging = Table(
    "reconciliation_staging",
    MetaData(),
    # INTEGER PRIMARY KEY on SQLite: the rowid itself, no second tree to maintain.
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("line_no", BigInteger),
    Column("reference", String(64)),
    Column("amount", BigInteger),
    Column("settled", Integer),
    Column("booked_at", UtcDateTime),
    Column("bank_transaction_id", String(64)),
    Column("text", Text),
    Column("fee", BigInteger),
    Column("duplicate", Integer),
    prefixes=["TEMPORARY"],
)
"""Per connection, never in the declared schema: created for a run and dropped after it."""

_STAGED = (
    "seq",
    "line_no",
    "reference",
    "amount",
    "settled",
    "booked_at",
    "bank_transaction_id",
    "text",
    "fee",
    "duplicate",
)
_SQLITE_STAGE = (
    "INSERT INTO temp.reconciliation_staging (seq, line_no, reference, amount, settled, "
    "booked_at, bank_transaction_id, text, fee, duplicate) VALUES "
)
_RECONCILED = ("matched", "settled_by_statement", "previous_day", "next_day")
PERSIST_BATCH = 250_000
"""Lines copied into the run's record per transaction, so the hub's writes interleave."""


@dataclass(frozen=True)
class DayWindow:
    """Business day D in Asia/Ho_Chi_Minh as UTC bounds, with its neighbours."""

    day: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.day, time(), tzinfo=VIETNAM).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=1)

    @property
    def neighbours(self) -> tuple[str, str]:
        return (
            (self.day - timedelta(days=1)).isoformat(),
            (self.day + timedelta(days=1)).isoformat(),
        )


# -- runs -----------------------------------------------------------------------------------


async def create_run(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(insert(runs), row)


async def finish_run(conn: AsyncConnection, run_id: str, **values: Any) -> None:
    for name in ("counts", "totals", "summary"):
        if name in values and not isinstance(values[name], str):
            values[name] = json.dumps(values[name], sort_keys=True)
    await conn.execute(update(runs).where(runs.c.id == run_id).values(**values))


async def completed_run_for(
    conn: AsyncConnection, bank: str, business_date: str, sha256: str, *, not_id: str
) -> str | None:
    """The completed run of this very statement, if one exists (re-runs are idempotent)."""
    found = await conn.scalar(
        select(runs.c.id)
        .where(
            runs.c.bank == bank,
            runs.c.business_date == business_date,
            runs.c.statement_sha256 == sha256,
            runs.c.status == "completed",
            runs.c.id != not_id,
        )
        .order_by(runs.c.created_at)
        .limit(1)
    )
    return str(found) if found is not None else None


async def discard_run(conn: AsyncConnection, run_id: str) -> None:
    """Remove a run's staged lines and exceptions (a failed run or a repeated statement)."""
    await conn.execute(delete(items).where(items.c.run_id == run_id))
    await conn.execute(delete(exceptions).where(exceptions.c.run_id == run_id))


async def delete_run(conn: AsyncConnection, run_id: str) -> None:
    await discard_run(conn, run_id)
    await conn.execute(delete(runs).where(runs.c.id == run_id))


def run_from_row(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "bank": row["bank"],
        "business_date": row["business_date"],
        "status": row["status"],
        "format": row["statement_format"],
        "statement_sha256": row["statement_sha256"],
        "line_count": row["line_count"],
        "counts": json.loads(row["counts"] or "{}"),
        "totals": json.loads(row["totals"] or "{}"),
        "summary": json.loads(row["summary"] or "{}"),
        "error": row["error"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "completed_at": row["completed_at"],
    }


async def get_run(conn: AsyncConnection, run_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(runs).where(runs.c.id == run_id))).mappings().first()
    return run_from_row(row) if row is not None else None


async def list_runs(conn: AsyncConnection, *, limit: int = 100) -> list[dict[str, Any]]:
    rows = (
        await conn.execute(select(runs).order_by(runs.c.created_at.desc()).limit(limit))
    ).mappings()
    return [run_from_row(row) for row in rows]


# -- staging --------------------------------------------------------------------------------


async def _pragmas(conn: AsyncConnection, *pragmas: str) -> None:
    """Run SQLite pragmas through the driver, outside any transaction (some require it)."""
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    for pragma in pragmas:
        await driver.execute(pragma)


async def tune(conn: AsyncConnection) -> None:
    """For one run on SQLite: larger page caches (main 64 MiB, the staging table's temporary
    database 128 MiB, enough for a million lines before it spills to its file) and planner
    statistics.

    ``ANALYZE`` (sampled, ``analysis_limit``) gives SQLite's planner the statistics it
    lacks without them: with none, a query on ``payments`` by portal, dossier and status
    picks the status index and scans every succeeded payment, which turned each statement
    settlement into a third of a second on a million payments. Call outside a transaction,
    on a ``writing_connection``: ``ANALYZE`` writes its statistics, so it runs in a
    transaction whose write lock is awaited in a thread; run bare, it waited for the lock
    inline and stood the loop still while the ledger held it (the busy timeout, then
    "database is locked").
    """
    if conn.dialect.name == "sqlite":
        await _pragmas(
            conn,
            "PRAGMA cache_size=-65536",
            "PRAGMA temp.cache_size=-131072",
            "PRAGMA analysis_limit=1000",
        )
        async with conn.begin():
            await conn.exec_driver_sql("ANALYZE payments")


async def untune(conn: AsyncConnection) -> None:
    """The pooled connection goes back as it came. Call outside a transaction."""
    if conn.dialect.name == "sqlite":
        await _pragmas(conn, "PRAGMA cache_size=-2000", "PRAGMA temp.cache_size=-2000")


async def create_staging(conn: AsyncConnection) -> None:
    await drop_staging(conn)
    await conn.run_sync(lambda sync: staging.create(sync))


async def drop_staging(conn: AsyncConnection) -> None:
    await conn.run_sync(lambda sync: staging.drop(sync, checkfirst=True))


async def release(conn: AsyncConnection) -> None:
    """The run's connection, done with: call outside a transaction.

    On SQLite it is closed, not handed back to the pool: its temporary database, the
    staging table with it, is simply deleted (a ``DROP`` walks every page of a million
    lines, 0.2 s), and the run's larger caches go too. On PostgreSQL the table is dropped
    and the connection goes back as it came.
    """
    if conn.dialect.name == "sqlite":
        await conn.invalidate()
        return
    async with conn.begin():
        await drop_staging(conn)
    await untune(conn)


def staging_rows(
    dialect: str, first_seq: int, entries: Sequence[StatementEntry], seen: set[str]
) -> list[tuple[Any, ...]]:
    """One batch of statement lines as the driver loads them, each with its ``duplicate``
    mark: every line after the first with the same reference (``seen`` holds the
    references of the lines before this batch, and is updated).

    Pure Python and no connection (``staging_batch`` is the caller), so a worker thread
    prepares the next batch while the event loop serves. Duplicates are found here, in
    one set lookup a line, rather than by a window function over the staged table
    afterwards (a sort of every line: 0.7 s a million). SQLite is handed pay times as
    the naive UTC text ``UtcDateTime`` stores, converted once per distinct time;
    PostgreSQL's ``COPY`` takes the datetimes.
    """
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    add = seen.add
    seq = first_seq
    if dialect == "postgresql":
        for line, reference, amount, settled, at, tx, text, fee in entries:
            duplicate = None
            if reference is not None:
                if reference in seen:
                    duplicate = 1
                else:
                    add(reference)
            append((seq, line, reference, amount, int(settled), at, tx, text, fee, duplicate))
            seq += 1
        return rows
    texts = _StoredTimes()
    for line, reference, amount, settled, at, tx, text, fee in entries:
        duplicate = None
        if reference is not None:
            if reference in seen:
                duplicate = 1
            else:
                add(reference)
        append((seq, line, reference, amount, settled, texts[at], tx, text, fee, duplicate))
        seq += 1
    return rows


class _StoredTimes(dict[datetime | None, str | None]):
    """How ``UtcDateTime`` keeps a time on SQLite (naive UTC text), made once per distinct
    time: a hit is a plain dict lookup, no Python call."""

    def __missing__(self, moment: datetime | None) -> str | None:
        found = None if moment is None else moment.astimezone(UTC).strftime(_STORED_TIME)
        self[moment] = found
        return found


_STORED_TIME = "%Y-%m-%d %H:%M:%S.%f"


@dataclass(frozen=True)
class StagingBatch:
    """One batch of statement lines made ready for the driver, off the event loop."""

    lines: int
    records: Sequence[tuple[Any, ...]]
    """PostgreSQL: the rows as ``COPY`` takes them."""
    inserts: Sequence[tuple[str, list[Any]]]
    """SQLite: multi-row ``INSERT`` statements with their flattened parameters."""


_ROWS_PER_INSERT = 1000
"""Rows per SQLite ``INSERT … VALUES``: 10,000 parameters, under SQLite's 32,766."""


def staging_batch(
    dialect: str, first_seq: int, entries: Sequence[StatementEntry], seen: set[str]
) -> StagingBatch:
    """``staging_rows``, and on SQLite the statements that load them.

    On SQLite one ``INSERT`` of a thousand rows costs the event loop a third less than
    ``executemany`` of them (1.0 s against 1.5 s a million lines): one statement step
    instead of a thousand, and the flattening is done here, in the reading thread.
    """
    rows = staging_rows(dialect, first_seq, entries, seen)
    if dialect == "postgresql":
        return StagingBatch(len(rows), rows, ())
    inserts = []
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start : start + _ROWS_PER_INSERT]
        inserts.append((_sqlite_insert(len(chunk)), list(chain.from_iterable(chunk))))
    return StagingBatch(len(rows), (), inserts)


@functools.cache
def _sqlite_insert(rows: int) -> str:
    values = "(" + ", ".join("?" * len(_STAGED)) + ")"
    return _SQLITE_STAGE + ", ".join([values] * rows)


async def stage(conn: AsyncConnection, batch: StagingBatch) -> None:
    """Load one batch of ``staging_batch`` into the staging table through the driver."""
    if not batch.lines:
        return
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if conn.dialect.name == "postgresql":
        await driver.copy_records_to_table(
            "reconciliation_staging", records=batch.records, columns=list(_STAGED)
        )
        return
    for sql, parameters in batch.inserts:
        await driver.execute(sql, parameters)


async def first_booked_outside(
    conn: AsyncConnection, earliest: datetime, latest: datetime
) -> tuple[int, datetime] | None:
    """The first staged line booked outside [earliest, latest): a file for another day."""
    s = staging
    found = (
        await conn.execute(
            select(s.c.line_no, s.c.booked_at)
            .where(or_(s.c.booked_at < earliest, s.c.booked_at >= latest))
            .order_by(s.c.seq)
            .limit(1)
        )
    ).first()
    return (int(found[0]), found[1]) if found is not None else None


# -- classification -------------------------------------------------------------------------


def _verdict(window: DayWindow) -> Any:
    """A staged line's class from its payment's row (CONTRACT §5), first rule that holds."""
    s, p = staging, payments
    day_of_payment = func.coalesce(p.c.paid_at, p.c.created_at)
    return case(
        (s.c.duplicate == 1, "duplicate"),
        (p.c.id.is_(None), "unknown_reference"),
        (s.c.amount != p.c.amount, "amount_mismatch"),
        (s.c.settled == 0, case((p.c.status == "succeeded", "status_mismatch"), else_="matched")),
        (p.c.status.in_(("failed", "cancelled")), "status_mismatch"),
        (p.c.status.in_(("pending", "unknown", "expired")), "settled_by_statement"),
        (day_of_payment < window.start, "previous_day"),
        (day_of_payment >= window.end, "next_day"),
        else_="matched",
    )


async def classify_into_record(
    conn: AsyncConnection, run_id: str, bank: str, window: DayWindow, first: int, last: int
) -> None:
    """Staged lines ``first``…``last``, joined to their payments by bank reference and
    classified, appended to the run's record: one pass, no row rewritten."""
    s, p = staging, payments
    chosen = (
        select(
            literal(run_id),
            s.c.seq,
            s.c.line_no,
            s.c.reference,
            s.c.amount,
            s.c.fee,
            s.c.settled,
            s.c.booked_at,
            s.c.bank_transaction_id,
            s.c.text,
            p.c.id,
            _verdict(window),
        )
        .select_from(s.outerjoin(p, and_(p.c.bank_reference == s.c.reference, p.c.bank == bank)))
        .where(s.c.seq.between(first, last))
    )
    await conn.execute(
        insert(items).from_select(
            [
                "run_id",
                "seq",
                "line_no",
                "reference",
                "amount",
                "fee",
                "settled",
                "booked_at",
                "bank_transaction_id",
                "text",
                "payment_id",
                "class",
            ],
            chosen,
        )
    )


def _absent(conn: AsyncConnection, column: Any, subquery: Any) -> Any:
    """``column`` not among ``subquery``'s values, in the form each planner does in one pass.

    SQLite builds one temporary index for ``NOT IN (subquery)``; PostgreSQL turns ``NOT
    EXISTS`` into a hash anti-join (its ``NOT IN`` falls back to a rescan per row once the
    subquery outgrows ``work_mem``).
    """
    if conn.dialect.name == "postgresql":
        inner = subquery.subquery()
        (only,) = inner.c
        return ~exists(select(literal(1)).select_from(inner).where(only == column))
    return column.not_in(subquery)


async def add_missing_at_bank(
    conn: AsyncConnection, run_id: str, bank: str, window: DayWindow, first_seq: int
) -> None:
    """One row per payment the hub settled on D that neither this statement nor a
    neighbouring day's completed run mentions."""
    neighbours = select(runs.c.id).where(
        runs.c.bank == bank,
        runs.c.status == "completed",
        runs.c.business_date.in_(window.neighbours),
    )
    on_this_statement = select(items.c.payment_id).where(
        items.c.run_id == run_id, items.c.payment_id.is_not(None)
    )
    on_a_neighbour = select(items.c.reference).where(
        items.c.run_id.in_(neighbours),
        items.c.line_no.is_not(None),
        items.c.reference.is_not(None),
    )
    number = func.row_number().over(order_by=(payments.c.paid_at, payments.c.id))
    chosen = select(
        literal(run_id),
        (number + (first_seq - 1)),
        payments.c.bank_reference,
        payments.c.amount,
        payments.c.id,
        literal("missing_at_bank"),
    ).where(
        payments.c.bank == bank,
        payments.c.status == "succeeded",
        payments.c.paid_at >= window.start,
        payments.c.paid_at < window.end,
        _absent(conn, payments.c.id, on_this_statement),
        _absent(conn, payments.c.bank_reference, on_a_neighbour),
    )
    await conn.execute(
        insert(items).from_select(
            ["run_id", "seq", "reference", "amount", "payment_id", "class"], chosen
        )
    )


async def open_exceptions(
    conn: AsyncConnection, run_id: str, bank: str, business_date: str, now: datetime
) -> None:
    """Every row of the run that needs a person becomes an open exception."""
    tail = run_id.split("_", 1)[1]
    exception_id = literal(f"exc_{tail}-") + cast(items.c.seq, String)
    chosen = select(
        exception_id,
        items.c.run_id,
        items.c.seq,
        items.c["class"],
        literal(bank),
        literal(business_date),
        items.c.payment_id,
        items.c.reference,
        items.c.amount,
        literal("open"),
        literal(now, type_=exceptions.c.created_at.type),
    ).where(items.c.run_id == run_id, items.c["class"].not_in(NO_EXCEPTION))
    await conn.execute(
        insert(exceptions).from_select(
            [
                "id",
                "run_id",
                "item_seq",
                "class",
                "bank",
                "business_date",
                "payment_id",
                "reference",
                "amount",
                "status",
                "created_at",
            ],
            chosen,
        )
    )


async def reclassify(
    conn: AsyncConnection, run_id: str, payment_ids: Iterable[str], to: str
) -> list[int]:
    """Settlement found these already settled by the bank's own confirmation meanwhile:
    their ``settled_by_statement`` lines become ``to`` (a duplicate line of the same
    payment stays a duplicate). Returns the amounts of the lines moved."""
    ids = list(payment_ids)
    if not ids:
        return []
    moved = await conn.execute(
        update(items)
        .where(
            items.c.run_id == run_id,
            items.c.payment_id.in_(ids),
            items.c["class"] == "settled_by_statement",
        )
        .values({"class": to})
        .returning(items.c.amount)
    )
    return [int(amount or 0) for (amount,) in moved]


async def to_settle(conn: AsyncConnection, run_id: str) -> dict[str, datetime | None]:
    """The payments the statement settles, with the bank's booking time of each."""
    rows = await conn.execute(
        select(items.c.payment_id, items.c.booked_at).where(
            items.c.run_id == run_id, items.c["class"] == "settled_by_statement"
        )
    )
    return {str(r[0]): r[1] for r in rows}


# -- summaries ------------------------------------------------------------------------------


async def summarise(conn: AsyncConnection, run_id: str) -> tuple[dict[str, int], dict[str, int]]:
    """Rows and VND per class, from the run's record (a scan of it: on SQLite in a worker
    thread, like ``summarise_statement``, so it is summed while the ledger settles)."""
    counts = {name: 0 for name in CLASSES}
    totals = {name: 0 for name in CLASSES}
    (rows,) = await _read_off_loop(
        conn,
        select(items.c["class"], func.count(), func.coalesce(func.sum(items.c.amount), 0))
        .where(items.c.run_id == run_id)
        .group_by(items.c["class"]),
    )
    for name, count, amount in rows:
        counts[str(name)] = int(count)
        totals[str(name)] = int(amount)
    return counts, totals


def move_lines(
    counts: dict[str, int], totals: dict[str, int], amounts: Sequence[int], source: str, to: str
) -> None:
    """Account for lines ``reclassify`` moved after ``summarise`` counted them."""
    counts[source] -= len(amounts)
    counts[to] += len(amounts)
    totals[source] -= sum(amounts)
    totals[to] += sum(amounts)


async def summarise_statement(conn: AsyncConnection, run_id: str) -> dict[str, Any]:
    """The statement's own totals, and the money reconciled per agency and per fee kind.

    One join of the run's record to its payments gives both breakdowns, grouped by agency
    and item list, so each distinct item list is decoded once, not once per payment. The
    join is a second a million lines, so on SQLite it runs in a worker thread: the caller
    gives it a connection of its own and goes on with the run's other statements (two
    cores, two SQLite statements at once).
    """
    statement_query = select(
        func.count(),
        func.coalesce(func.sum(items.c.amount), 0),
        func.coalesce(func.sum(items.c.fee), 0),
    ).where(items.c.run_id == run_id, items.c.line_no.is_not(None))
    listed_items = payments.c["items"]
    groups_query = (
        select(payments.c.agency_code, listed_items, func.count(), func.sum(payments.c.amount))
        .select_from(items.join(payments, payments.c.id == items.c.payment_id))
        .where(items.c.run_id == run_id, items.c["class"].in_(_RECONCILED))
        .group_by(payments.c.agency_code, listed_items)
    )
    (statement,), groups = await _read_off_loop(conn, statement_query, groups_query)
    by_agency: dict[str, dict[str, int]] = {}
    by_fee_kind: dict[str, int] = {}
    for agency, listed, count, amount in groups:
        row = by_agency.setdefault(str(agency), {"count": 0, "amount": 0})
        row["count"] += int(count)
        row["amount"] += int(amount)
        for item in json.loads(listed):
            kind = str(item.get("kind"))
            by_fee_kind[kind] = by_fee_kind.get(kind, 0) + int(item.get("amount", 0)) * int(count)
    return {
        "statement": {
            "lines": int(statement[0]),
            "amount": int(statement[1]),
            "fee": int(statement[2]),
        },
        "by_agency": dict(sorted(by_agency.items())),
        "by_fee_kind": dict(sorted(by_fee_kind.items())),
    }


async def _read_off_loop(conn: AsyncConnection, *queries: Any) -> list[list[tuple[Any, ...]]]:
    """Every row of each query; on SQLite in a worker thread, off the event loop.

    The hub's SQLite statements run on the loop (``InlineSqliteConnection``); a long read
    would hold it. The queries are compiled here and run on the connection's own sqlite3
    handle in a thread, where SQLite releases the Python lock while it works. Only for
    queries whose parameters and columns need no conversion (text and numbers).
    """
    if conn.dialect.name != "sqlite":
        return [[tuple(row) for row in await conn.execute(query)] for query in queries]
    statements = []
    for query in queries:
        compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        names = compiled.positiontup or []
        statements.append((str(compiled), [compiled.params[name] for name in names]))
    handle = sqlite_handle(conn)

    def read() -> list[list[tuple[Any, ...]]]:
        return [handle.execute(sql, parameters).fetchall() for sql, parameters in statements]

    return await asyncio.to_thread(read)


# -- reading back ---------------------------------------------------------------------------


async def report_rows(conn: AsyncConnection, run_id: str) -> AsyncIterator[dict[str, Any]]:
    """Every row of the run in order, with its payment's side, streamed from the database."""
    query = (
        select(
            items.c.seq,
            items.c.line_no,
            items.c["class"],
            items.c.reference,
            items.c.amount,
            items.c.fee,
            items.c.settled,
            items.c.booked_at,
            items.c.bank_transaction_id,
            items.c.payment_id,
            payments.c.amount.label("payment_amount"),
            payments.c.status.label("payment_status"),
            payments.c.agency_code,
            payments.c.dossier_code,
        )
        .select_from(items.outerjoin(payments, payments.c.id == items.c.payment_id))
        .where(items.c.run_id == run_id)
        .order_by(items.c.seq)
    )
    result = await conn.stream(query.execution_options(yield_per=5000))
    async for row in result.mappings():
        yield dict(row)


async def list_exceptions(
    conn: AsyncConnection,
    *,
    run_id: str | None = None,
    bank: str | None = None,
    kind: str | None = None,
    status: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    conditions = []
    if run_id is not None:
        conditions.append(exceptions.c.run_id == run_id)
    if bank is not None:
        conditions.append(exceptions.c.bank == bank)
    if kind is not None:
        conditions.append(exceptions.c["class"] == kind)
    if status is not None:
        conditions.append(exceptions.c.status == status)
    query = (
        select(
            exceptions,
            items.c.line_no,
            payments.c.agency_code,
            payments.c.dossier_code,
            payments.c.status.label("payment_status"),
            payments.c.amount.label("payment_amount"),
            resolutions.c.resolution,
            resolutions.c.note,
            resolutions.c.resolved_by,
            resolutions.c.resolved_at,
        )
        .select_from(
            exceptions.join(
                items,
                and_(items.c.run_id == exceptions.c.run_id, items.c.seq == exceptions.c.item_seq),
            )
            .outerjoin(payments, payments.c.id == exceptions.c.payment_id)
            .outerjoin(resolutions, resolutions.c.exception_id == exceptions.c.id)
        )
        .where(*conditions)
        .order_by(exceptions.c.run_id, exceptions.c.item_seq)
        .limit(limit)
    )
    return [dict(row) for row in (await conn.execute(query)).mappings()]


async def get_exception(conn: AsyncConnection, exception_id: str) -> dict[str, Any] | None:
    row = (
        (await conn.execute(select(exceptions).where(exceptions.c.id == exception_id)))
        .mappings()
        .first()
    )
    return dict(row) if row is not None else None


async def mark_resolved(conn: AsyncConnection, exception_id: str) -> bool:
    """Guarded: only an open exception becomes resolved; False when it already was."""
    result = await conn.execute(
        update(exceptions)
        .where(exceptions.c.id == exception_id, exceptions.c.status == "open")
        .values(status="resolved")
    )
    return bool(result.rowcount == 1)
