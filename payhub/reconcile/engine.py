"""One reconciliation run: read a statement, match it in the database, settle, record.

Order, and why:

1. The run is recorded (``running``) before anything is read, so a crash leaves a trace.
2. The statement is read lazily by its format's reader and staged in batches of
   ``STAGE_BATCH`` lines, each batch read in a worker thread (the loop keeps serving)
   and classified as soon as it is staged, while the next one is read; the file's
   sha-256 is computed and duplicated references are marked on the way. Memory holds
   two batches and the set of references seen.
3. A statement identical to one already reconciled for the same bank and day is not
   recorded again: its lines are dropped and the earlier run is the answer.
4. Classification (batch by batch, by joins), missing payments and exceptions are
   set-based SQL (``payhub.store.reconciliation``).
5. Only then are payments touched: ``settled_by_statement`` goes through the state
   machine (``payhub.service.settlement``). A statement that cannot be read fails the run
   before step 4, so a failed run changes no payment.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import islice
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payhub.domain.clock import Clock, to_vietnam
from payhub.domain.ids import new_id
from payhub.errors import StatementError
from payhub.reconcile.entries import (
    BankAccount,
    ByteSource,
    ReferenceFinder,
    StatementEntry,
    reference_in_text,
)
from payhub.reconcile.formats import reader_for
from payhub.service.settlement import settle_from_statement
from payhub.store import reconciliation as store
from payhub.store.engine import writing_connection
from payhub.store.ledger import Ledger

STAGE_BATCH = 20_000

_T = TypeVar("_T")

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
    account: BankAccount | None = None
    """The account the statement must be for; ``None`` does not check it."""


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
        reader = reader_for(request.statement_format, request.account)
        run_id = new_id("rec")
        day = request.business_date.isoformat()
        async with writing_connection(self.engine) as conn, conn.begin():
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
        background: list[asyncio.Future[Any]] = []
        try:
            hashing = _Hashing(stream)
            window = store.DayWindow(request.business_date)
            async with writing_connection(self.engine) as conn:
                await store.tune(conn)
                try:
                    async with conn.begin():
                        await store.create_staging(conn)
                    try:
                        lines = await self._stage(
                            conn, run_id, request, reader(hashing), hashing, progress
                        )
                    except StatementError as exc:
                        return await self._failed(run_id, request, exc)
                    sha256 = hashing.sha256.hexdigest()
                    async with conn.begin():
                        earlier = await store.completed_run_for(
                            conn, request.bank, day, sha256, not_id=run_id
                        )
                        if earlier is not None:
                            await store.delete_run(conn, run_id)
                            found = await store.get_run(conn, earlier)
                            assert found is not None
                            log.info("reconciliation.repeated", run=earlier, bank=request.bank)
                            return {**found, "repeated": True}
                    # Every line is in the record: the statement's summary is summed meanwhile.
                    summarising = await self._beside(store.summarise_statement, run_id, background)
                    async with conn.begin():
                        await store.add_missing_at_bank(
                            conn, run_id, request.bank, window, lines + 1
                        )
                        await store.open_exceptions(conn, run_id, request.bank, day, self.clock())
                        payable = await store.to_settle(conn, run_id)
                        await store.finish_run(
                            conn, run_id, statement_sha256=sha256, line_count=lines
                        )
                    counting = await self._beside(store.summarise, run_id, background)
                finally:
                    await store.release(conn)
            outcome = await settle_from_statement(
                self.ledger,
                sorted(payable),
                paid_at=payable,
                run_id=run_id,
                bank=request.bank,
                actor=f"reconciliation:{run_id}",
            )
            summary = await summarising
            counts, totals = await counting
            async with writing_connection(self.engine) as conn, conn.begin():
                moved = await store.reclassify(conn, run_id, outcome.already, "matched")
                store.move_lines(counts, totals, moved, "settled_by_statement", "matched")
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
        finally:
            for job in background:  # a run that stopped early leaves no query running
                await _settle(job)
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

    async def _beside(
        self,
        summing: Callable[[AsyncConnection, str], Awaitable[_T]],
        run_id: str,
        background: list[asyncio.Future[Any]],
    ) -> asyncio.Future[_T]:
        """Start one of the run's summaries on a connection of its own, so it is summed
        while the run goes on (SQLite works on it in a worker thread, on the other core).

        Returns once the summary has its connection and has handed its query to the
        thread: the run's next statements run inline and would not let it start (it
        waited for them, measured: 1.3 s of summing after the run's own work instead of
        beside it). The statement's summary is started once every line is in the record,
        the counts once the missing payments are too; settlement, meanwhile, only moves
        a line from ``settled_by_statement`` to ``matched`` (both reconciled), which
        ``move_lines`` accounts for afterwards.
        """
        connected = asyncio.Event()

        async def sum_up() -> _T:
            async with self.engine.connect() as conn:
                connected.set()  # the query below goes to its thread in this same step
                return await summing(conn, run_id)

        job = asyncio.ensure_future(sum_up())
        background.append(job)
        waiting = asyncio.ensure_future(connected.wait())
        await asyncio.wait([job, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        return job

    async def _failed(
        self, run_id: str, request: RunRequest, exc: StatementError
    ) -> dict[str, Any]:
        """Record why the statement could not be read; nothing else was written."""
        async with writing_connection(self.engine) as conn, conn.begin():
            await store.discard_run(conn, run_id)
            await store.finish_run(
                conn, run_id, status="failed", error=str(exc), completed_at=self.clock()
            )
            failed = await store.get_run(conn, run_id)
        log.info("reconciliation.failed", run=run_id, bank=request.bank, error=str(exc))
        assert failed is not None
        return failed

    async def _stage(
        self,
        conn: AsyncConnection,
        run_id: str,
        request: RunRequest,
        entries: Iterator[StatementEntry],
        hashing: _Hashing,
        progress: Progress | None,
    ) -> int:
        """Read, stage and classify the statement; returns the number of lines staged.

        Reading is Python work (a million CSV lines is about two seconds of it): each batch
        is read, its references looked for in remittance text and made into staging rows
        in a worker thread, so the event loop keeps serving payments and confirmations.
        While batch *n* is classified into the run's record (one SQL statement, during
        which SQLite holds no Python lock), batch *n + 1* is being read: on two cores the
        reading costs almost nothing more. The bulk load itself runs with the reader
        idle, since it takes the Python lock back for every row. The lines are committed
        ``PERSIST_BATCH`` at a time, so the hub's writes interleave; a statement that
        turns out unreadable further on, or repeated, has its rows removed by the caller.
        """
        find = self.find_reference
        dialect = conn.dialect.name
        seen: set[str] = set()

        def next_rows(first_seq: int) -> store.StagingBatch:
            batch = list(islice(entries, STAGE_BATCH))
            for i in [i for i, entry in enumerate(batch) if entry[1] is None]:
                entry = batch[i]
                found = find(entry.text) if entry.text else None
                if found is not None:
                    batch[i] = entry._replace(reference=found)
            return store.staging_batch(dialect, first_seq, batch, seen)

        window = store.DayWindow(request.business_date)
        staged = 0
        # run_in_executor hands the read to the thread at once; a to_thread task would
        # only start at the loop's next turn, and the classification below runs inline
        # without one: the read waited for it (a million CSV lines: 6.9 s of staging and
        # matching before, 4.9 s now).
        loop = asyncio.get_running_loop()
        reading = loop.run_in_executor(None, next_rows, 1)
        try:
            rows = await reading
            while rows.lines:
                async with conn.begin():
                    persisted = 0
                    while rows.lines and persisted < store.PERSIST_BATCH:
                        first = staged + 1
                        await store.stage(conn, rows)
                        staged += rows.lines
                        persisted += rows.lines
                        if progress is not None:
                            progress(hashing.size, staged)
                        reading = loop.run_in_executor(None, next_rows, staged + 1)
                        await store.classify_into_record(
                            conn, run_id, request.bank, window, first, staged
                        )
                        rows = await reading
        finally:
            await _settle(reading)
        async with conn.begin():
            stray = await store.first_booked_outside(
                conn, window.start - timedelta(days=1), window.end + timedelta(days=1)
            )
        if stray is not None:
            line, at = stray
            raise StatementError(
                f"line {line}: booked on {to_vietnam(at).date()}, but this statement is for "
                f"{request.business_date} (a file for another day?)"
            )
        return staged


async def _settle(reading: asyncio.Future[Any]) -> None:
    """Wait for a read in flight when staging stopped early: never leave a thread reading
    the stream after the run returns; its outcome no longer matters."""
    if not reading.done():
        await asyncio.wait([reading])
    if not reading.cancelled():
        reading.exception()
