"""``payhub bench --preload N``: N stored payments, fast, cloned from rows the hub wrote.

Going through HTTP would take hours for a million payments, and writing rows by hand would
drift from what the hub really stores. So the bench first lets the hub create and confirm
payments, then copies one succeeded and one pending payment, with their idempotency key,
events and audit entries, N times in bulk: new ids, bank references and dossier codes
substituted everywhere they appear, every column kept as the hub wrote it. Audit entries
are re-chained (``chain_hash``) and the chain head moved, so ``payhub audit verify``
still holds and the hub appends after them as usual.

SQLite only, with the hub stopped: one connection, journal off for the load, WAL back on.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from payhub.store.ledger import AuditEntry, chain_hash

SUCCEEDED_SHARE = 0.7
"""Most stored payments of a live hub are paid; the rest pending, as templates allow."""

CHUNK = 50_000


def _rows(db: sqlite3.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    cursor = db.execute(sql, args)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _template(db: sqlite3.Connection, status: str) -> dict[str, Any] | None:
    found = _rows(db, "SELECT * FROM payments WHERE status = ? ORDER BY id LIMIT 1", status)
    if not found:
        return None
    payment = found[0]
    return {
        "payment": payment,
        "keys": _rows(db, "SELECT * FROM idempotency_keys WHERE resource_id = ?", payment["id"]),
        "events": _rows(
            db, "SELECT * FROM events WHERE payment_id = ? ORDER BY seq", payment["id"]
        ),
        "audit": _rows(
            db, "SELECT * FROM audit_log WHERE payment_id = ? ORDER BY seq", payment["id"]
        ),
    }


def _substitute(value: Any, swaps: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        for old, new in swaps:
            if old in value:
                value = value.replace(old, new)
    return value


def _clone(row: dict[str, Any], swaps: list[tuple[str, str]], **fixed: Any) -> dict[str, Any]:
    out = {name: _substitute(value, swaps) for name, value in row.items()}
    out.update(fixed)
    return out


def _insert(db: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    names = list(rows[0])
    sql = (
        f"INSERT INTO {table} ({', '.join(names)}) "  # noqa: S608 - names from the schema
        f"VALUES ({', '.join('?' for _ in names)})"
    )
    db.executemany(sql, [tuple(row[n] for n in names) for row in rows])


def _aware(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def preload_payments(path: str, count: int) -> dict[str, int]:
    """Store ``count`` more payments in the SQLite file at ``path``; returns rows added."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        templates = [t for t in (_template(db, "succeeded"), _template(db, "pending")) if t]
        if not templates:
            raise ValueError("preload needs at least one payment the hub stored")
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("PRAGMA synchronous=OFF")
        head = _rows(db, "SELECT seq, hash, event_seq FROM audit_head WHERE id = 1")[0]
        seq, prev, event_seq = int(head["seq"]), str(head["hash"]), int(head["event_seq"])
        added = {"payments": 0, "events": 0, "audit_log": 0, "idempotency_keys": 0}
        for start in range(0, count, CHUNK):
            batch: dict[str, list[dict[str, Any]]] = {name: [] for name in added}
            for index in range(start, min(count, start + CHUNK)):
                paid = len(templates) == 1 or (index % 10) < SUCCEEDED_SHARE * 10
                template = templates[0] if paid else templates[1]
                seq, prev = _one(template, index, seq, prev, batch)
            db.execute("BEGIN")
            for name, rows in batch.items():
                if name == "events":  # events take the next numbers the ledger hands out
                    numbered = []
                    for row in rows:
                        event_seq += 1
                        numbered.append({**row, "seq": event_seq})
                    rows = numbered
                _insert(db, name, rows)
                added[name] += len(rows)
            db.execute(
                "UPDATE audit_head SET seq = ?, hash = ?, event_seq = ? WHERE id = 1",
                (seq, prev, event_seq),
            )
            db.execute("COMMIT")
        db.execute("PRAGMA journal_mode=WAL")
        return added
    finally:
        db.close()


def _one(
    template: dict[str, Any],
    index: int,
    seq: int,
    prev: str,
    batch: dict[str, list[dict[str, Any]]],
) -> tuple[int, str]:
    payment = template["payment"]
    new_id = f"pay_00{index:024d}"
    reference = f"PB{index:010d}"
    swaps = [
        (payment["id"], new_id),
        (payment["bank_reference"], reference),
        (payment["dossier_code"], f"PRELOAD-{index:08d}"),
    ]
    batch["payments"].append(_clone(payment, swaps))
    for number, key in enumerate(template["keys"]):
        batch["idempotency_keys"].append(_clone(key, swaps, key=f"preload-{index}-{number}"))
    for number, event in enumerate(template["events"]):
        # history: delivered long ago (a pending backlog would load the measured hub)
        batch["events"].append(
            _clone(
                event,
                swaps,
                id=f"evt_00{index:022d}{number:02d}",
                delivery_state="delivered",
                attempts=max(int(event["attempts"]), 1),
                next_attempt_at=None,
            )
        )
    for entry in template["audit"]:
        seq += 1
        row = _clone(entry, swaps, seq=seq, prev_hash=prev)
        prev = chain_hash(
            prev,
            seq,
            AuditEntry(
                at=_aware(row["at"]),
                actor=row["actor"],
                action=row["action"],
                payment_id=row["payment_id"],
                from_status=row["from_status"],
                to_status=row["to_status"],
                detail=json.loads(row["detail"]),
            ),
        )
        row["hash"] = prev
        batch["audit_log"].append(row)
    return seq, prev
