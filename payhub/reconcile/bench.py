"""``payhub bench --scenario reconcile``: a million-line statement against a million payments.

Two days are built first (not timed), each in its own fresh SQLite database of ``payhub
init``: ``payments`` vnpay payments and the CSV statement the simulator would produce for
them, and ``payments`` vietqr payments and their camt.053 (version .08, as the vietqr
simulator writes it: ``banks/vietqr/cash_report.py``), both with known faults (lost
confirmations, payments missing at the bank, wrong amounts, duplicated lines, unknown
references). Then ``payhub reconcile`` runs in its own process for each, as an operator
would run it, and is measured from outside: wall time, and peak resident memory from the
kernel's accounting of that finished child (``wait4``'s ``ru_maxrss``: the largest of the
child and the helper process a large camt.053 is read in, about 45 MB, which is not added).
The counts each run reports are checked against the faults that were planted.

The camt.053 day is what a VietQR collection account really receives: the transfer
reference is not a field but sits in the payer's remittance text (``RmtInf/Ustrd``), as
banking apps rewrite it (prefixes, suffixes, groups, case), sometimes wrapped across two
``Ustrd``; beside the booked credits the statement holds pending (``PDNG``) credits and the
account's own debits, which the matcher must pass over.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

DAY = date(2026, 11, 27)
LOST_EVERY = 1000
MISSING_EVERY = 997
WRONG_AMOUNT_EVERY = 1009
DUPLICATE_EVERY = 1013
UNKNOWN_LINES = 100
PENDING_EVERY = 991
"""vietqr: a credit the bank still holds (``PDNG``) for a payment the hub has not settled."""
DEBIT_EVERY = 211
"""vietqr: the account's own debits (fees, sweeps) between the credits."""
WRAPPED_EVERY = 7
"""vietqr: a memo the bank wrapped across two ``Ustrd`` lines, the reference cut in two."""
BUDGETS = {"vnpay-csv": 10, "camt.053": 30}
"""Seconds each run may take on the reference machine (2 CPUs); 500 MB of memory each."""
MEMORY_BUDGET_MB = 500

_COLUMNS = (
    "id, portal_id, dossier_code, procedure_code, agency_code, agency_name, payer_name, "
    "payer_id_number, payer_phone, items, amount, currency, description, return_url, bank, "
    "bank_reference, bank_transaction_id, payment_url, qr, status, failure_code, "
    "refunded_amount, created_at, expires_at, paid_at, updated_at"
)


def _reference(i: int) -> str:
    """A scrambled, unique reference: statement order (time) is not reference order."""
    return f"PH{(i * 7_919_171) % 10**10:010d}"


def _expected() -> dict[str, int]:
    return {
        "matched": 0, "settled_by_statement": 0, "missing_at_bank": 0, "unknown_reference": 0,
        "amount_mismatch": 0, "duplicate": 0, "status_mismatch": 0, "previous_day": 0,
        "next_day": 0,
    }  # fmt: skip


def _payment_rows(
    count: int,
    *,
    bank: str = "vnpay",
    reference: Callable[[int], str] = _reference,
    amount: Callable[[int], int] = lambda i: 150_000,
    pending: Callable[[int], bool] = lambda i: i % LOST_EVERY == 1,
) -> Iterator[tuple[Any, ...]]:
    start = datetime(2026, 11, 26, 17, 0, 5, tzinfo=UTC)  # 00:00:05 in Hanoi
    step = 86_000 / max(count, 1)
    for i in range(count):
        at = (start + timedelta(seconds=i * step)).strftime("%Y-%m-%d %H:%M:%S.%f")
        status = "pending" if pending(i) else "succeeded"
        price = amount(i)
        items = json.dumps([{"kind": "fee", "code": "PCD", "description": "Phí", "amount": price}])
        yield (
            f"pay_bench{i:010d}", "demo", f"D-{i}", "1.004227", f"A{i % 40:02d}", None,
            "Nguyen Van An", None, None, items, price, "VND", None, "https://p.example/",
            bank, reference(i), None, None, None, status, None, 0,
            at, at, at if status == "succeeded" else None, at,
        )  # fmt: skip


def _insert_payments(database: Path, rows: Iterator[tuple[Any, ...]]) -> None:
    marks = ", ".join("?" * 26)
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA synchronous=OFF")
        conn.executemany(f"INSERT INTO payments ({_COLUMNS}) VALUES ({marks})", rows)  # noqa: S608


def build_day(database: Path, statement: Path, count: int, merchant: str) -> dict[str, int]:
    """Write ``count`` vnpay payments and ``merchant``'s CSV statement; the counts to expect."""
    _insert_payments(database, _payment_rows(count))
    expected = _expected()
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


# ------------------------------------------------------------------ the vietqr day (camt.053)

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DIGITS36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VALUE = {char: value for value, char in enumerate(_DIGITS36)}
_PREFIXES = ("MBVCB.{n7}.", "IBFT ", "{n6}-", "TKThe :{n10}, ", "")
_SUFFIXES = (".CT tu {n10} NGUYEN VAN A", " Ma GD {n8}", "- Ma giao dich/ Trace {n6}", "")
_GROUPINGS = ((12,), (4, 4, 4), (6, 6), (2, 10), (3, 3, 3, 3))
_VIETQR_AMOUNTS = (50_000, 150_000, 150_000, 200_000, 300_000, 1_250_000, 2_550_000)


def vietqr_reference(i: int) -> str:
    """A unique reference that verifies (MOD 37-2), as ``new_bank_reference`` would draw.

    Eight characters come from a scramble of ``i`` (unique for 2^40 payments); the ninth is
    the first that makes the check character one of the alphabet's.
    """
    scrambled = (i * 0x9E3779B1 + 0x5DEECE66D) % 2**40
    body = "PH" + "".join(_CROCKFORD[(scrambled >> (5 * k)) & 31] for k in range(8))
    running = 0
    for char in body:
        running = ((running + _VALUE[char]) * 2) % 37
    for salt in _CROCKFORD:
        check = (1 - ((running + _VALUE[salt]) * 2) % 37) % 37
        if check < 36 and _DIGITS36[check] in _CROCKFORD:
            return body + salt + _DIGITS36[check]
    raise AssertionError("no salt verifies")  # never: 32 salts cover 32 distinct checks


def _memo(rng: random.Random, reference: str, *, wrapped: bool) -> list[str]:
    """What the payer's banking app sends for ``reference``: one ``Ustrd``, or two (wrapped)."""
    numbers = {f"n{n}": "".join(rng.choices("0123456789", k=n)) for n in (6, 7, 8, 10)}
    prefix = rng.choice(_PREFIXES).format(**numbers)
    suffix = rng.choice(_SUFFIXES).format(**numbers)
    if wrapped:
        cut = rng.randrange(3, 10)
        if reference[cut:].startswith("PH"):
            cut += 1  # a line starting with PH would read as a second reference
        head, tail = reference[:cut], reference[cut:]
        return [f"{prefix}{head}", f"{tail}{suffix}"]
    grouping = rng.choice(_GROUPINGS)
    pieces, start = [], 0
    for size in grouping:
        pieces.append(reference[start : start + size])
        start += size
    if any(piece.startswith("PH") for piece in pieces[1:]):
        pieces = [reference]  # a group starting with PH would read as a second reference
    body = rng.choice((" ", "-", ".")).join(pieces)
    body = rng.choice((body, body.lower(), body.upper()))
    memo = f"{prefix}{body}{suffix}"
    return [memo if memo != reference else f"IBFT {reference}"]


_CAMT_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
  <BkToCstmrStmt>
    <GrpHdr>
      <MsgId>STMT20261127</MsgId>
      <CreDtTm>2026-11-28T00:05:00+07:00</CreDtTm>
    </GrpHdr>
    <Stmt>
      <Id>STMT20261127</Id>
      <CreDtTm>2026-11-28T00:05:00+07:00</CreDtTm>
      <Acct>
        <Id>
          <Othr>
            <Id>{account}</Id>
          </Othr>
        </Id>
        <Ccy>VND</Ccy>
        <Svcr>
          <FinInstnId>
            <ClrSysMmbId>
              <MmbId>970436</MmbId>
            </ClrSysMmbId>
          </FinInstnId>
        </Svcr>
      </Acct>
"""
_CAMT_TAIL = """    </Stmt>
  </BkToCstmrStmt>
</Document>
"""
_CAMT_ENTRY = """      <Ntry>
        <NtryRef>{n}</NtryRef>
        <Amt Ccy="VND">{amount}</Amt>
        <CdtDbtInd>{direction}</CdtDbtInd>
        <Sts>
          <Cd>{status}</Cd>
        </Sts>
{booking}        <ValDt>
          <Dt>2026-11-27</Dt>
        </ValDt>
        <AcctSvcrRef>{transaction}</AcctSvcrRef>
        <BkTxCd>
          <Domn>
            <Cd>PMNT</Cd>
            <Fmly>
              <Cd>{family}</Cd>
              <SubFmlyCd>{sub_family}</SubFmlyCd>
            </Fmly>
          </Domn>
        </BkTxCd>
        <NtryDtls>
          <TxDtls>
            <Refs>
              <AcctSvcrRef>{transaction}</AcctSvcrRef>
              <EndToEndId>{end_to_end}</EndToEndId>
            </Refs>
            <Amt Ccy="VND">{amount}</Amt>
            <CdtDbtInd>{direction}</CdtDbtInd>
            <RmtInf>
{ustrd}            </RmtInf>
          </TxDtls>
        </NtryDtls>
      </Ntry>
"""
_BOOKING = """        <BookgDt>
          <DtTm>{at}</DtTm>
        </BookgDt>
"""
_USTRD = "              <Ustrd>{}</Ustrd>\n"


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _camt_entry(
    n: int,
    *,
    amount: int,
    transaction: str,
    memo: list[str],
    at: datetime | None,
    credit: bool = True,
) -> str:
    return _CAMT_ENTRY.format(
        n=n,
        amount=amount,
        direction="CRDT" if credit else "DBIT",
        status="PDNG" if at is None else "BOOK",
        booking="" if at is None else _BOOKING.format(at=at.isoformat(timespec="seconds")),
        transaction=transaction,
        family="RCDT" if credit else "ICDT",
        sub_family="DMCT" if credit else "CHRG",
        end_to_end=f"NPS{n:012d}",
        ustrd="".join(_USTRD.format(_xml_text(text)) for text in memo),
    )


def build_vietqr_day(database: Path, statement: Path, count: int, account: str) -> dict[str, int]:
    """Write ``count`` vietqr payments and their camt.053; returns the counts to expect.

    Payment ``i`` is pending in the hub when its confirmation was lost (``LOST_EVERY``: the
    statement settles it) or when the bank still holds the credit (``PENDING_EVERY``: a
    ``PDNG`` entry, matched and not settled).
    """
    from payhub.domain.clock import VIETNAM

    def pending(i: int) -> bool:
        return i % LOST_EVERY == 1 or i % PENDING_EVERY == 5

    def price(i: int) -> int:
        return _VIETQR_AMOUNTS[i % len(_VIETQR_AMOUNTS)]

    _insert_payments(
        database,
        _payment_rows(
            count, bank="vietqr", reference=vietqr_reference, amount=price, pending=pending
        ),
    )
    expected = _expected()
    rng = random.Random(20261127)
    start = datetime(2026, 11, 27, 0, 0, 5, tzinfo=VIETNAM)
    step = 86_000 / max(count, 1)
    entries = 0

    def transaction() -> str:
        nonlocal entries
        entries += 1
        return f"FT26331{entries:09d}"

    with statement.open("w", encoding="utf-8") as out:
        out.write(_CAMT_HEAD.replace("{account}", account))
        for i in range(count):
            moment = start + timedelta(seconds=i * step)
            if i % DEBIT_EVERY == 0:
                out.write(
                    _camt_entry(entries + 1, amount=1_650 * (1 + i % 3), transaction=transaction(),
                                memo=["Phi dich vu SMS Banking"], at=moment, credit=False)
                )  # fmt: skip
            if i % MISSING_EVERY == 2:
                if not pending(i):  # a pending payment off the statement is no exception
                    expected["missing_at_bank"] += 1
                continue
            held = i % PENDING_EVERY == 5
            at = None if held else moment
            amount = price(i)
            if i % WRONG_AMOUNT_EVERY == 3:
                amount -= 10_000
                expected["amount_mismatch"] += 1
            elif held:
                expected["matched"] += 1  # PDNG for a pending payment: nothing to settle yet
            elif i % LOST_EVERY == 1:
                expected["settled_by_statement"] += 1
            else:
                expected["matched"] += 1
            memo = _memo(rng, vietqr_reference(i), wrapped=i % WRAPPED_EVERY == 6)
            entry = _camt_entry(
                entries + 1, amount=amount, transaction=transaction(), memo=memo, at=at
            )
            out.write(entry)
            if i % DUPLICATE_EVERY == 4:
                out.write(entry)  # the bank's export repeats the entry
                expected["duplicate"] += 1
        noon = datetime(2026, 11, 27, 12, 0, tzinfo=VIETNAM)
        for j in range(UNKNOWN_LINES):
            # Half name a reference no payment has; half name none at all ("chuyen tien").
            memo = _memo(rng, vietqr_reference(count + j), wrapped=False) if j % 2 else [
                f"NGUYEN VAN A chuyen tien {j}"
            ]  # fmt: skip
            out.write(_camt_entry(entries + 1, amount=150_000, transaction=transaction(),
                                  memo=memo, at=noon))  # fmt: skip
        expected["unknown_reference"] = UNKNOWN_LINES
        out.write(_CAMT_TAIL)
    return expected


# ------------------------------------------------------------------ running and reporting


def _measure(command: list[str], folder: Path) -> tuple[float, float, int, str]:
    """Run ``command``; its wall seconds, its own peak RSS in MB, exit code and stderr.

    ``wait4`` gives this child's resource usage alone (``RUSAGE_CHILDREN`` would be the
    maximum over every child waited for, the earlier run included).
    """
    errors = folder / "stderr.txt"
    with errors.open("wb") as stderr:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)  # noqa: S603
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    return seconds, usage.ru_maxrss / 1024, child.returncode, errors.read_text().strip()


def _run_day(
    folder: Path,
    *,
    bank: str,
    statement_format: str,
    file_name: str,
    build: Callable[[Path, Path, int, str], dict[str, int]],
    lines: int,
    say: Callable[..., None] | None,
) -> dict[str, Any] | None:
    """Set up a hub in ``folder``, build one day, reconcile it in a child process."""
    import asyncio

    from payhub.reconcile.formats import bank_account
    from payhub.settings import load_settings
    from payhub.setup import init_setup

    config = init_setup(folder, port=8099)  # never served: the reconcile command only

    async def migrate_now() -> None:
        from payhub.store import migrate
        from payhub.store.engine import create_engine

        engine = create_engine(load_settings(config).database_url)
        await migrate.upgrade(engine)
        await engine.dispose()

    asyncio.run(migrate_now())
    statement = folder / file_name
    if say:
        say(f"bench reconcile: building {lines:,} {bank} payments and their {statement_format}…")
    built = time.perf_counter()
    # the statement names the account the bank is configured with (vnp_TmnCode, Acct/Id)
    account = bank_account(load_settings(config).banks[bank])
    assert account is not None
    expected = build(folder / "payhub.db", statement, lines, account.number)
    build_seconds = time.perf_counter() - built
    report = folder / "report.json"
    command = [
        sys.executable, "-m", "payhub.cli", "reconcile", "--config", str(config),
        "--bank", bank, "--date", DAY.isoformat(), str(statement),
        "--format", "json", "--out", str(report),
    ]  # fmt: skip
    if say:
        say(f"bench reconcile: reconciling the {statement_format} statement…")
    seconds, peak_mb, code, stderr = _measure(command, folder)
    if code != 0:
        print(f"payhub: bench reconcile ({statement_format}) failed: {stderr}", file=sys.stderr)
        return None
    run = json.loads(report.read_text())
    budget = BUDGETS[statement_format]
    return {
        "bank": bank,
        "format": statement_format,
        "statement_lines": run["line_count"],
        "statement_bytes": statement.stat().st_size,
        "seconds": round(seconds, 2),
        "lines_per_second": round(run["line_count"] / seconds),
        "peak_memory_mb": round(peak_mb, 1),
        "build_seconds": round(build_seconds, 2),
        "counts": run["counts"],
        "expected_counts": expected,
        "counts_as_planted": run["counts"] == expected,
        "budget": {"seconds": budget, "peak_memory_mb": MEMORY_BUDGET_MB},
        "within_budget": seconds <= budget and peak_mb <= MEMORY_BUDGET_MB,
    }


def run_reconcile_bench(*, lines: int, as_json: bool) -> int:
    """Build both days, reconcile each in a child process, report time, memory and counts."""
    say: Callable[..., None] | None = None
    if not as_json and sys.stderr.isatty():

        def say(text: str) -> None:
            print(text, file=sys.stderr)

    days = (
        ("vnpay", "vnpay-csv", "vnpay-20261127.csv", build_day),
        ("vietqr", "camt.053", "vietqr-20261127.xml", build_vietqr_day),
    )
    runs = []
    for bank, statement_format, file_name, build in days:
        with tempfile.TemporaryDirectory(prefix=f"payhub-bench-reconcile-{bank}-") as name:
            run = _run_day(
                Path(name),
                bank=bank,
                statement_format=statement_format,
                file_name=file_name,
                build=build,
                lines=lines,
                say=say,
            )
        if run is None:
            return 1
        runs.append(run)
    planted = all(run["counts_as_planted"] for run in runs)
    result = {
        "scenario": "reconcile",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "database": "sqlite",
        "payments": lines,
        "runs": runs,
        "counts_as_planted": planted,
        "within_budget": all(run["within_budget"] for run in runs),
    }
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"PayHub bench reconcile: {lines:,} payments per bank (SQLite, {os.cpu_count()} CPUs)"
        )
        for run in runs:
            budget = run["budget"]
            print(
                f"  {run['format']:<9} {run['statement_lines']:,} lines "
                f"({run['statement_bytes'] / 1024**2:,.0f} MB): {run['seconds']} s "
                f"({run['lines_per_second']:,} lines/s), peak memory {run['peak_memory_mb']} MB "
                f"(budget {budget['seconds']} s, {budget['peak_memory_mb']} MB"
                f"{'' if run['within_budget'] else ', OVER'})\n"
                f"            counts as planted: {run['counts_as_planted']}  {run['counts']}"
            )
            if not run["counts_as_planted"]:
                print(f"            expected: {run['expected_counts']}")
    return 0 if planted else 1
