"""Prepared statements give exactly what SQLAlchemy gives for the same statement.

On SQLite they bypass SQLAlchemy's execution (``payhub.store.prepared``); these tests run
each hot statement both ways on the same rows and compare values, types and what is
stored, so a change in SQLAlchemy's type processing (the text format of SQLite
datetimes, say) fails here rather than in a portal's answer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from payhub.store import repository
from payhub.store.engine import create_engine
from payhub.store.prepared import Prepared
from payhub.store.tables import idempotency_keys, payments

WHOLE_SECOND = datetime(2026, 11, 27, 8, 0, 0, tzinfo=UTC)
WITH_MICROS = datetime(2026, 11, 27, 8, 0, 1, 123456, tzinfo=UTC)


def _payment(i: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": f"pay_prep{i}", "portal_id": "demo", "dossier_code": "D-1",
        "procedure_code": None, "agency_code": "H29", "agency_name": "Sở",
        "payer_name": "Nguyễn Văn An", "payer_id_number": None, "payer_phone": None,
        "items": '[{"kind":"fee","code":"F","description":"Phí","amount":150000}]',
        "amount": 150_000, "currency": "VND", "description": None,
        "return_url": "https://p.example/", "bank": "vnpay", "bank_reference": f"REF{i}",
        "bank_transaction_id": None, "payment_url": None, "qr": None, "status": "succeeded",
        "failure_code": None, "refunded_amount": 0, "created_at": WHOLE_SECOND,
        "expires_at": WITH_MICROS, "paid_at": None, "updated_at": WHOLE_SECOND,
        "next_query_at": None, "query_attempts": 0,
    }  # fmt: skip
    row.update(overrides)
    return row


@pytest.fixture(name="engine")
async def _engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(
            insert(payments),
            [_payment(1), _payment(2, paid_at=WITH_MICROS), _payment(3, status="pending")],
        )
        await conn.execute(
            insert(idempotency_keys),
            {
                "portal_id": "demo", "key": "k-1", "scope": "payments.create",
                "fingerprint": "f" * 64, "resource_id": "pay_prep1", "created_at": WITH_MICROS,
            },
        )  # fmt: skip
    yield engine
    await engine.dispose()


READS: list[tuple[str, Prepared, dict[str, Any]]] = [
    ("by reference", repository._BY_REFERENCE, {"reference": "REF2", "bank": "vnpay"}),
    ("no such reference", repository._BY_REFERENCE, {"reference": "NOPE", "bank": "vnpay"}),
    ("payment", repository._PAYMENT, {"id": "pay_prep3"}),
    ("portal's payment", repository._PORTAL_PAYMENT, {"id": "pay_prep1", "portal": "demo"}),
    (
        "other succeeded",
        repository._DOSSIER_OTHERS_SUCCEEDED,
        {"portal": "demo", "code": "D-1", "paid": "pay_prep1"},
    ),
    ("idempotency key", repository._KEY, {"portal": "demo", "key": "k-1"}),
]


@pytest.mark.parametrize(("_name", "statement", "parameters"), READS, ids=[r[0] for r in READS])
async def test_reads_equal_sqlalchemys(
    engine: AsyncEngine, _name: str, statement: Prepared, parameters: dict[str, Any]
) -> None:
    async with engine.connect() as conn:
        fast = await statement.rows(conn, parameters)
        core = [dict(r) for r in (await conn.execute(statement.statement, parameters)).mappings()]
    assert fast == core
    for got, expected in zip(fast, core, strict=True):
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in expected.items()}


async def test_the_status_change_stores_what_sqlalchemy_stores(
    engine: AsyncEngine, database_url: str
) -> None:
    """The same change, once prepared and once through Core, leaves identical rows."""
    changes = {
        "seen": "pending", "status": "succeeded", "paid_at": WITH_MICROS,
        "failure_code": None, "bank_transaction_id": "14000001", "at": WHOLE_SECOND,
    }  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(insert(payments), _payment(4, status="pending"))
        assert await repository._CHANGE_STATUS.rowcount(conn, {"pid": "pay_prep3", **changes}) == 1
        core = await conn.execute(
            repository._CHANGE_STATUS.statement, {"pid": "pay_prep4", **changes}
        )
        assert core.rowcount == 1
        # the guard: a second change from "pending" finds the row changed
        assert await repository._CHANGE_STATUS.rowcount(conn, {"pid": "pay_prep3", **changes}) == 0
    rows = await _stored(engine, database_url, ["pay_prep3", "pay_prep4"])
    first, second = (
        {k: v for k, v in row.items() if k not in ("id", "bank_reference")} for row in rows
    )
    assert first == second
    assert first["status"] == "succeeded" and first["next_query_at"] is None


async def _stored(engine: AsyncEngine, database_url: str, ids: list[str]) -> list[dict[str, Any]]:
    """Rows as the database holds them: SQLite's own text, not SQLAlchemy's reading of it."""
    if database_url.startswith("sqlite"):
        path = make_url(database_url).database
        with sqlite3.connect(str(path)) as raw:
            raw.row_factory = sqlite3.Row
            marks = ", ".join("?" * len(ids))
            found = raw.execute(f"SELECT * FROM payments WHERE id IN ({marks}) ORDER BY id", ids)
            return [dict(row) for row in found]
    async with engine.connect() as conn:
        query = select(payments).where(payments.c.id.in_(ids)).order_by(payments.c.id)
        return [dict(row) for row in (await conn.execute(query)).mappings()]


def test_a_list_parameter_is_refused_when_prepared() -> None:
    from sqlalchemy import bindparam
    from sqlalchemy.dialects import sqlite

    statement = Prepared(
        select(payments.c.id).where(payments.c.id.in_(bindparam("ids", expanding=True)))
    )
    with pytest.raises(ValueError, match="list parameter"):
        statement._compiled(sqlite.dialect())
