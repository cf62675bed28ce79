"""Reconciliation's SQL: staging statement lines in bulk and classifying them by joins.

The statement is matched where the payments are. Its lines are written into
``reconciliation_items`` in large batches through the driver (``executemany`` on SQLite,
``COPY`` on PostgreSQL); then a handful of set-based statements give every line its class
(CONTRACT §5), one join against ``payments`` by bank reference and never one query per
line. The hub's payments the statement does not mention are added as ``missing_at_bank``
rows by one ``INSERT … SELECT``; every row that needs a person becomes an exception by
another.

A payment's business day is the Asia/Ho_Chi_Minh day of its ``paid_at`` (of its
``created_at`` when it has none): a statement line for day D whose payment the hub has on
D-1 or D+1 crossed a cut-off and is ``previous_day`` / ``next_day``. A payment of day D
missing from D's statement is not ``missing_at_bank`` when a completed run of D-1 or D+1
for the same bank has a line for it (the other side of the same cut-off).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    String,
    and_,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from payhub.domain.clock import VIETNAM
from payhub.reconcile.entries import StatementEntry
from payhub.store.tables import (
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

_ITEM_COLUMNS = (
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
)


_SQLITE_STAGE = (
    "INSERT INTO reconciliation_items (run_id, seq, line_no, reference, amount, fee, settled, "
    "booked_at, bank_transaction_id, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_RECONCILED = ("matched", "settled_by_statement", "previous_day", "next_day")


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


def _sqlite_time(moment: datetime | None) -> str | None:
    """How SQLAlchemy stores an aware time on SQLite: naive UTC text (see ``UtcDateTime``)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


async def stage(
    conn: AsyncConnection, run_id: str, first_seq: int, entries: Sequence[StatementEntry]
) -> None:
    """Write one batch of statement lines through the driver, without per-row overhead."""
    if not entries:
        return
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if conn.dialect.name == "postgresql":
        records = [
            (
                run_id,
                first_seq + i,
                e.line,
                e.reference,
                e.amount,
                e.fee,
                int(e.settled),
                e.booked_at,
                e.bank_transaction_id,
                e.text,
            )
            for i, e in enumerate(entries)
        ]
        await driver.copy_records_to_table(
            "reconciliation_items", records=records, columns=list(_ITEM_COLUMNS)
        )
        return
    rows = [
        (
            run_id,
            first_seq + i,
            e.line,
            e.reference,
            e.amount,
            e.fee,
            int(e.settled),
            _sqlite_time(e.booked_at),
            e.bank_transaction_id,
            e.text,
        )
        for i, e in enumerate(entries)
    ]
    await driver.executemany(_SQLITE_STAGE, rows)


# -- classification -------------------------------------------------------------------------


async def classify(conn: AsyncConnection, run_id: str, bank: str, window: DayWindow) -> None:
    """Give every staged line of the run its class, by joins; see the module docstring."""
    mine = items.c.run_id == run_id
    await conn.execute(
        update(items)
        .where(mine, items.c.reference == payments.c.bank_reference, payments.c.bank == bank)
        .values(payment_id=payments.c.id)
    )
    position = func.row_number().over(partition_by=items.c.reference, order_by=items.c.seq)
    ranked = (
        select(items.c.seq, position.label("position"))
        .where(mine, items.c.reference.is_not(None))
        .subquery()
    )
    await conn.execute(
        update(items)
        .where(mine, items.c.seq.in_(select(ranked.c.seq).where(ranked.c.position > 1)))
        .values({"class": "duplicate"})
    )
    await conn.execute(
        update(items)
        .where(mine, items.c["class"].is_(None), items.c.payment_id.is_(None))
        .values({"class": "unknown_reference"})
    )
    day_of_payment = func.coalesce(payments.c.paid_at, payments.c.created_at)
    verdict = case(
        (items.c.amount != payments.c.amount, "amount_mismatch"),
        (
            items.c.settled == 0,
            case((payments.c.status == "succeeded", "status_mismatch"), else_="matched"),
        ),
        (payments.c.status.in_(("failed", "cancelled")), "status_mismatch"),
        (payments.c.status.in_(("pending", "unknown", "expired")), "settled_by_statement"),
        (day_of_payment < window.start, "previous_day"),
        (day_of_payment >= window.end, "next_day"),
        else_="matched",
    )
    await conn.execute(
        update(items)
        .where(mine, items.c["class"].is_(None), items.c.payment_id == payments.c.id)
        .values({"class": verdict})
    )


async def add_missing_at_bank(
    conn: AsyncConnection, run_id: str, bank: str, window: DayWindow, first_seq: int
) -> None:
    """One row per payment the hub settled on D that neither this statement nor a
    neighbouring day's completed run mentions."""
    here = items.alias("here")
    there = items.alias("there")
    neighbour = runs.alias("neighbour")
    on_this_statement = exists(
        select(literal(1)).where(
            here.c.run_id == run_id, here.c.reference == payments.c.bank_reference
        )
    )
    on_a_neighbour = exists(
        select(literal(1))
        .select_from(neighbour.join(there, there.c.run_id == neighbour.c.id))
        .where(
            neighbour.c.bank == bank,
            neighbour.c.status == "completed",
            neighbour.c.business_date.in_(window.neighbours),
            there.c.reference == payments.c.bank_reference,
            there.c.line_no.is_not(None),
        )
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
        ~on_this_statement,
        ~on_a_neighbour,
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
) -> None:
    """Settlement found these already settled by the bank's own confirmation meanwhile."""
    ids = list(payment_ids)
    if ids:
        await conn.execute(
            update(items)
            .where(items.c.run_id == run_id, items.c.payment_id.in_(ids))
            .values({"class": to})
        )


async def to_settle(conn: AsyncConnection, run_id: str) -> dict[str, datetime | None]:
    """The payments the statement settles, with the bank's booking time of each."""
    rows = await conn.execute(
        select(items.c.payment_id, items.c.booked_at).where(
            items.c.run_id == run_id, items.c["class"] == "settled_by_statement"
        )
    )
    return {str(r[0]): r[1] for r in rows}


# -- summaries ------------------------------------------------------------------------------


async def summarise(
    conn: AsyncConnection, run_id: str
) -> tuple[dict[str, int], dict[str, int], dict[str, Any]]:
    """Counts and VND per class, and the summary: the statement's own totals, the money
    reconciled per agency and per fee kind."""
    counts = {name: 0 for name in CLASSES}
    by_class: dict[str, int] = {}
    rows = await conn.execute(
        select(items.c["class"], func.count(), func.coalesce(func.sum(items.c.amount), 0))
        .where(items.c.run_id == run_id)
        .group_by(items.c["class"])
    )
    for name, count, amount in rows:
        counts[str(name)] = int(count)
        by_class[str(name)] = int(amount)
    statement = (
        await conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(items.c.amount), 0),
                func.coalesce(func.sum(items.c.fee), 0),
            ).where(items.c.run_id == run_id, items.c.line_no.is_not(None))
        )
    ).one()
    reconciled = items.c["class"].in_(_RECONCILED)
    agencies = await conn.execute(
        select(payments.c.agency_code, func.count(), func.sum(payments.c.amount))
        .select_from(items.join(payments, payments.c.id == items.c.payment_id))
        .where(items.c.run_id == run_id, reconciled)
        .group_by(payments.c.agency_code)
        .order_by(payments.c.agency_code)
    )
    by_agency = {str(code): {"count": int(n), "amount": int(a)} for code, n, a in agencies}
    totals = {name: by_class.get(name, 0) for name in CLASSES}
    return (
        counts,
        totals,
        {
            "statement": {
                "lines": int(statement[0]),
                "amount": int(statement[1]),
                "fee": int(statement[2]),
            },
            "by_agency": by_agency,
            "by_fee_kind": await _by_fee_kind(conn, run_id),
        },
    )


async def _by_fee_kind(conn: AsyncConnection, run_id: str) -> dict[str, int]:
    """Reconciled money per item kind (fee, charge, tax, …), read from the items' JSON."""
    if conn.dialect.name == "postgresql":
        query = (
            "SELECT e->>'kind', SUM((e->>'amount')::bigint) FROM reconciliation_items i "
            "JOIN payments p ON p.id = i.payment_id, json_array_elements(p.items::json) e "
            "WHERE i.run_id = :run AND i.class IN ('matched', 'settled_by_statement', "
            "'previous_day', 'next_day') GROUP BY 1 ORDER BY 1"
        )
    else:
        query = (
            "SELECT json_extract(e.value, '$.kind'), SUM(json_extract(e.value, '$.amount')) "
            "FROM reconciliation_items i JOIN payments p ON p.id = i.payment_id, "
            "json_each(p.items) e WHERE i.run_id = :run AND i.class IN ('matched', "
            "'settled_by_statement', 'previous_day', 'next_day') GROUP BY 1 ORDER BY 1"
        )
    rows = await conn.execute(text(query), {"run": run_id})
    return {str(kind): int(amount) for kind, amount in rows}


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
