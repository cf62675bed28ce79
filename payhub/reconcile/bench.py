"""``payhub bench --scenario reconcile``: a million-line statement against a million payments.

The day is built first (not timed): ``payments`` hub payments written straight into a
fresh SQLite database of ``payhub init``, and the vnpay CSV the simulator would produce
for them, with known faults (lost confirmations, payments missing at the bank, wrong
amounts, duplicated lines, unknown references). Then ``payhub reconcile`` runs in its own
process, as an operator would run it, and is measured from outside: wall time, and peak
resident memory from the kernel's accounting of the finished child (``ru_maxrss``). The
counts it reports are checked against the faults that were planted.
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

DAY = date(2026, 11, 27)
LOST_EVERY = 1000
MISSING_EVERY = 997
WRONG_AMOUNT_EVERY = 1009
DUPLICATE_EVERY = 1013
UNKNOWN_LINES = 100


def _reference(i: int) -> str:
    """A scrambled, unique reference: statement order (time) is not reference order."""
    return f"PH{(i * 7_919_171) % 10**10:010d}"


def _payment_rows(count: int) -> Any:
    start = datetime(2026, 11, 26, 17, 0, 5, tzinfo=UTC)  # 00:00:05 in Hanoi
    step = 86_000 / max(count, 1)
    items = json.dumps([{"kind": "fee", "code": "PCD", "description": "Phí", "amount": 150_000}])
    for i in range(count):
        at = (start + timedelta(seconds=i * step)).strftime("%Y-%m-%d %H:%M:%S.%f")
        status = "pending" if i % LOST_EVERY == 1 else "succeeded"
        yield (
            f"pay_bench{i:010d}", "demo", f"D-{i}", "1.004227", f"A{i % 40:02d}", None,
            "Nguyen Van An", None, None, items, 150_000, "VND", None, "https://p.example/",
            "vnpay", _reference(i), None, None, None, status, None, 0,
            at, at, at if status == "succeeded" else None, at,
        )  # fmt: skip


def build_day(database: Path, statement: Path, count: int, merchant: str) -> dict[str, int]:
    """Write ``count`` payments and ``merchant``'s statement; returns the counts to expect."""
    columns = (
        "id, portal_id, dossier_code, procedure_code, agency_code, agency_name, payer_name, "
        "payer_id_number, payer_phone, items, amount, currency, description, return_url, bank, "
        "bank_reference, bank_transaction_id, payment_url, qr, status, failure_code, "
        "refunded_amount, created_at, expires_at, paid_at, updated_at"
    )
    marks = ", ".join("?" * 26)
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA synchronous=OFF")
        conn.executemany(f"INSERT INTO payments ({columns}) VALUES ({marks})", _payment_rows(count))  # noqa: S608
    expected = {
        "matched": 0, "settled_by_statement": 0, "missing_at_bank": 0, "unknown_reference": 0,
        "amount_mismatch": 0, "duplicate": 0, "status_mismatch": 0, "previous_day": 0,
        "next_day": 0,
    }  # fmt: skip
    start = datetime(2026, 11, 27, 0, 0, 5)
    step = 86_000 / max(count, 1)
    with statement.open("w", encoding="utf-8") as out:
        out.write("vnp_TransactionNo,vnp_TxnRef,amount,status,pay_date,fee,vnp_TmnCode\n")
        for i in range(count):
            if i % MISSING_EVERY == 2:
                if i % LOST_EVERY != 1:  # a pending payment off the statement is no exception
                    expected["missing_at_bank"] += 1
                continue
            at = (start + timedelta(seconds=i * step)).strftime("%Y%m%d%H%M%S")
            amount = 150_000
            if i % WRONG_AMOUNT_EVERY == 3:
                amount = 15_000
                expected["amount_mismatch"] += 1
            elif i % LOST_EVERY == 1:
                expected["settled_by_statement"] += 1
            else:
                expected["matched"] += 1
            line = f"{14_000_000 + i},{_reference(i)},{amount},00,{at},1650,{merchant}\n"
            out.write(line)
            if i % DUPLICATE_EVERY == 4:
                out.write(line)
                expected["duplicate"] += 1
        for j in range(UNKNOWN_LINES):
            out.write(f"{99_000_000 + j},PX{j:010d},150000,00,20261127120000,1650,{merchant}\n")
        expected["unknown_reference"] = UNKNOWN_LINES
    return expected


def run_reconcile_bench(*, lines: int, as_json: bool) -> int:
    """Build the day, reconcile it in a child process, report time, memory and counts."""
    import asyncio

    from payhub.settings import load_settings
    from payhub.setup import init_setup

    say = print if not as_json and sys.stderr.isatty() else None
    with tempfile.TemporaryDirectory(prefix="payhub-bench-reconcile-") as name:
        folder = Path(name)
        config = init_setup(folder, port=8099)  # never served: the reconcile command only

        async def migrate_now() -> None:
            from payhub.store import migrate
            from payhub.store.engine import create_engine

            engine = create_engine(load_settings(config).database_url)
            await migrate.upgrade(engine)
            await engine.dispose()

        asyncio.run(migrate_now())
        statement = folder / "vnpay-20261127.csv"
        if say:
            say(
                f"bench reconcile: building {lines:,} payments and their statement…",
                file=sys.stderr,
            )
        built = time.perf_counter()
        merchant = load_settings(config).banks["vnpay"].options["tmn_code"]
        expected = build_day(folder / "payhub.db", statement, lines, merchant)
        build_seconds = time.perf_counter() - built
        report = folder / "report.json"
        command = [
            sys.executable, "-m", "payhub.cli", "reconcile", "--config", str(config),
            "--bank", "vnpay", "--date", DAY.isoformat(), str(statement),
            "--format", "json", "--out", str(report),
        ]  # fmt: skip
        started = time.perf_counter()
        finished = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        seconds = time.perf_counter() - started
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if finished.returncode != 0:
            print(f"payhub: bench reconcile failed: {finished.stderr.strip()}", file=sys.stderr)
            return 1
        run = json.loads(report.read_text())
        statement_bytes = statement.stat().st_size
    result = {
        "scenario": "reconcile",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "database": "sqlite",
        "payments": lines,
        "statement_lines": run["line_count"],
        "statement_bytes": statement_bytes,
        "seconds": round(seconds, 2),
        "lines_per_second": round(run["line_count"] / seconds),
        "peak_memory_mb": round(peak_kib / 1024, 1),
        "build_seconds": round(build_seconds, 2),
        "counts": run["counts"],
        "counts_as_planted": run["counts"] == expected,
        "budget": {"seconds": 10, "peak_memory_mb": 500},
    }
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"PayHub bench reconcile: {run['line_count']:,} statement lines against {lines:,} "
            f"payments (SQLite, {os.cpu_count()} CPUs)\n"
            f"  {result['seconds']} s ({result['lines_per_second']:,} lines/s), peak memory "
            f"{result['peak_memory_mb']} MB (budget 10 s, 500 MB)\n"
            f"  counts as planted: {result['counts_as_planted']}  {run['counts']}"
        )
    return 0 if result["counts_as_planted"] else 1
