"""Checking the audit trail's hash chain end to end (``payhub audit verify``)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from payhub.store.ledger import GENESIS_HASH, AuditEntry, chain_hash
from payhub.store.tables import audit_head, audit_log


@dataclass(frozen=True)
class ChainReport:
    entries: int
    head: str
    broken_at: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


async def verify_chain(engine: AsyncEngine, *, chunk: int = 5000) -> ChainReport:
    """Recompute every link; the first entry that does not follow from its predecessor fails."""
    prev, expected_seq, count = GENESIS_HASH, 1, 0
    async with engine.connect() as conn:
        last = 0
        while True:
            rows = (
                (
                    await conn.execute(
                        select(audit_log)
                        .where(audit_log.c.seq > last)
                        .order_by(audit_log.c.seq)
                        .limit(chunk)
                    )
                )
                .mappings()
                .all()
            )
            if not rows:
                break
            for row in rows:
                seq = int(row["seq"])
                if seq != expected_seq:
                    return ChainReport(count, prev, seq, f"entry {expected_seq} is missing")
                entry = AuditEntry(
                    at=row["at"],
                    actor=row["actor"],
                    action=row["action"],
                    payment_id=row["payment_id"],
                    from_status=row["from_status"],
                    to_status=row["to_status"],
                    detail=json.loads(row["detail"]),
                )
                if row["prev_hash"] != prev:
                    return ChainReport(
                        count, prev, seq, "prev_hash does not match the entry before"
                    )
                digest = chain_hash(prev, seq, entry)
                if digest != row["hash"]:
                    return ChainReport(count, prev, seq, "content does not match its hash")
                prev, expected_seq, count = digest, seq + 1, count + 1
                last = seq
        head = (
            (await conn.execute(select(audit_head).where(audit_head.c.id == 1))).mappings().first()
        )
    if head is None or head["hash"] != prev or int(head["seq"]) != count:
        return ChainReport(count, prev, count + 1, "the chain head does not match the last entry")
    return ChainReport(count, prev)
