"""One reconciliation run: read a statement, match it in the database, settle, record.

Order, and why:

1. The run is recorded (``running``) before anything is read, so a crash leaves a trace.
2. The statement is read lazily by its format's reader and staged in batches of
   ``STAGE_BATCH`` lines; the file's sha-256 is computed on the way. Memory holds one
   batch, whatever the file's size.
3. A statement identical to one already reconciled for the same bank and day is not
   matched again: its staged lines are dropped and the earlier run is the answer.
4. Classification, missing payments and exceptions are set-based SQL
   (``payhub.store.reconciliation``).
5. Only then are payments touched: ``settled_by_statement`` goes through the state
   machine (``payhub.service.settlement``). A statement that cannot be read fails the run
   before step 4, so a failed run changes no payment.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from payhub.domain.clock import Clock, to_vietnam
from payhub.domain.ids import new_id
from payhub.errors import StatementError
from payhub.reconcile.entries import ByteSource, ReferenceFinder, StatementEntry, reference_in_text
from payhub.reconcile.formats import reader_for
from payhub.service.settlement import settle_from_statement
from payhub.store import reconciliation as store
from payhub.store.ledger import Ledger

STAGE_BATCH = 20_000

log = structlog.get_logger(__name__)

Progress = Callable[[int, int], None]
"""Called with (bytes read, lines staged) as the statement is read."""


class _Hashing:
    """A binary stream that hashes what is read through it and counts the bytes."""

    def __init__(self, raw: ByteSource) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        self.sha256.update(chunk)
        self.size += len(chunk)
        return chunk


@dataclass(frozen=True)
class RunRequest:
    """What a finance user asks for: this bank's statement for that business day."""

    bank: str
    business_date: date
    statement_format: str
    actor: str


class Reconciler:
    """Runs reconciliations against the hub's database; one per process is enough."""

    def __init__(
        self,
        engine: AsyncEngine,
        ledger: Ledger,
        clock: Clock,
        *,
        find_reference: ReferenceFinder = reference_in_text,
    ) -> None:
        self.engine = engine
        self.ledger = ledger
        self.clock = clock
        self.find_reference = find_reference

    async def run(
        self, request: RunRequest, stream: ByteSource, *, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Reconcile ``stream``; returns the run object (``completed`` or ``failed``)."""
        reader = reader_for(request.statement_format)
        run_id = new_id("rec")
        day = request.business_date.isoformat()
        async with self.engine.begin() as conn:
            await store.create_run(
                conn,
                {
                    "id": run_id,
                    "bank": request.bank,
                    "business_date": day,
                    "statement_format": request.statement_format,
                    "status": "running",
                    "line_count": 0,
                    "counts": "{}",
                    "totals": "{}",
                    "summary": "{}",
                    "created_by": request.actor,
                    "created_at": self.clock(),
                },
            )
        hashing = _Hashing(stream)
        try:
            lines = await self._stage(run_id, request, reader(hashing), hashing, progress)
        except StatementError as exc:
            async with self.engine.begin() as conn:
                await store.discard_run(conn, run_id)
                await store.finish_run(
                    conn, run_id, status="failed", error=str(exc), completed_at=self.clock()
                )
                failed = await store.get_run(conn, run_id)
            log.info("reconciliation.failed", run=run_id, bank=request.bank, error=str(exc))
            assert failed is not None
            return failed
        sha256 = hashing.sha256.hexdigest()
        async with self.engine.begin() as conn:
            earlier = await store.completed_run_for(conn, request.bank, day, sha256, not_id=run_id)
            if earlier is not None:
                await store.delete_run(conn, run_id)
                found = await store.get_run(conn, earlier)
                assert found is not None
                log.info("reconciliation.repeated", run=earlier, bank=request.bank)
                return {**found, "repeated": True}
            window = store.DayWindow(request.business_date)
            await store.classify(conn, run_id, request.bank, window)
            await store.add_missing_at_bank(conn, run_id, request.bank, window, lines + 1)
            await store.open_exceptions(conn, run_id, request.bank, day, self.clock())
            payable = await store.to_settle(conn, run_id)
            await store.finish_run(conn, run_id, statement_sha256=sha256, line_count=lines)
        outcome = await settle_from_statement(
            self.ledger,
            sorted(payable),
            paid_at=payable,
            run_id=run_id,
            bank=request.bank,
            actor=f"reconciliation:{run_id}",
        )
        async with self.engine.begin() as conn:
            await store.reclassify(conn, run_id, outcome.already, "matched")
            counts, totals, summary = await store.summarise(conn, run_id)
            await store.finish_run(
                conn,
                run_id,
                status="completed",
                counts=counts,
                totals=totals,
                summary=summary,
                completed_at=self.clock(),
            )
            done = await store.get_run(conn, run_id)
        assert done is not None
        log.info(
            "reconciliation.completed",
            run=run_id,
            bank=request.bank,
            business_date=day,
            lines=lines,
            counts=json.dumps(counts, sort_keys=True),
        )
        return done

    async def _stage(
        self,
        run_id: str,
        request: RunRequest,
        entries: Any,
        hashing: _Hashing,
        progress: Progress | None,
    ) -> int:
        allowed = {request.business_date + timedelta(days=delta) for delta in (-1, 0, 1)}
        batch: list[StatementEntry] = []
        staged = 0
        for entry in entries:
            if entry.booked_at is not None and to_vietnam(entry.booked_at).date() not in allowed:
                raise StatementError(
                    f"line {entry.line}: booked on {to_vietnam(entry.booked_at).date()}, "
                    f"but this statement is for {request.business_date} "
                    "(a file for another day?)"
                )
            if entry.reference is None and entry.text:
                found = self.find_reference(entry.text)
                if found is not None:
                    entry = _with_reference(entry, found)
            batch.append(entry)
            if len(batch) >= STAGE_BATCH:
                staged = await self._write(run_id, staged, batch)
                batch = []
                if progress is not None:
                    progress(hashing.size, staged)
        staged = await self._write(run_id, staged, batch)
        if progress is not None:
            progress(hashing.size, staged)
        return staged

    async def _write(self, run_id: str, staged: int, batch: list[StatementEntry]) -> int:
        if batch:
            async with self.engine.begin() as conn:
                await store.stage(conn, run_id, staged + 1, batch)
        return staged + len(batch)


def _with_reference(entry: StatementEntry, reference: str) -> StatementEntry:
    return StatementEntry(
        line=entry.line,
        reference=reference,
        amount=entry.amount,
        settled=entry.settled,
        booked_at=entry.booked_at,
        bank_transaction_id=entry.bank_transaction_id,
        text=entry.text,
        fee=entry.fee,
    )
