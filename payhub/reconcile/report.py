"""A run's reports: the run object of CONTRACT §5, and text, CSV, JSON and HTML renderings.

The CSV has one line per statement line and per hub payment the statement lacks, with its
class; it is produced row by row from the database, so a million-line run is written
without being held.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from payhub.domain.clock import rfc3339
from payhub.store import reconciliation as store

CSV_COLUMNS = (
    "line",
    "class",
    "reference",
    "amount",
    "fee",
    "bank_status",
    "booked_at",
    "bank_transaction_id",
    "payment_id",
    "payment_amount",
    "payment_status",
    "agency_code",
    "dossier_code",
)

CLASS_TITLES = {
    "matched": "Matched",
    "settled_by_statement": "Settled by statement",
    "missing_at_bank": "Missing at bank",
    "unknown_reference": "Unknown reference",
    "amount_mismatch": "Amount mismatch",
    "duplicate": "Duplicate",
    "status_mismatch": "Status mismatch",
    "previous_day": "Previous day (cut-off)",
    "next_day": "Next day (cut-off)",
}


def public_run(run: dict[str, Any]) -> dict[str, Any]:
    """The run object: the contract's fields, then what helps a person check it."""
    return {
        "id": run["id"],
        "bank": run["bank"],
        "business_date": run["business_date"],
        "status": run["status"],
        "counts": run["counts"],
        "totals": run["totals"],
        "summary": run["summary"],
        "statement_format": run["format"],
        "statement_sha256": run["statement_sha256"],
        "line_count": run["line_count"],
        "error": run["error"],
        "created_by": run["created_by"],
        "created_at": rfc3339(run["created_at"]),
        "completed_at": rfc3339(run["completed_at"]),
    }


def public_exception(row: dict[str, Any]) -> dict[str, Any]:
    """An exception as the API shows it; the resolution fields are null while it is open."""
    return {
        "id": row["id"],
        "run_id": row["run_id"],
        "class": row["class"],
        "bank": row["bank"],
        "business_date": row["business_date"],
        "line": row.get("line_no"),
        "reference": row["reference"],
        "amount": row["amount"],
        "payment_id": row["payment_id"],
        "payment_amount": row.get("payment_amount"),
        "payment_status": row.get("payment_status"),
        "agency_code": row.get("agency_code"),
        "dossier_code": row.get("dossier_code"),
        "status": row["status"],
        "resolution": row.get("resolution"),
        "note": row.get("note"),
        "resolved_by": row.get("resolved_by"),
        "resolved_at": rfc3339(row.get("resolved_at")),
    }


def _csv_line(values: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    return "" if value is None else value


async def csv_lines(rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    """The report CSV, header first, one text line at a time."""
    yield _csv_line(list(CSV_COLUMNS))
    async for row in rows:
        settled = row["settled"]
        yield _csv_line(
            [
                _cell(row["line_no"]),
                row["class"],
                _cell(row["reference"]),
                _cell(row["amount"]),
                _cell(row["fee"]),
                "" if settled is None else ("settled" if settled else "not_settled"),
                _cell(row["booked_at"]),
                _cell(row["bank_transaction_id"]),
                _cell(row["payment_id"]),
                _cell(row["payment_amount"]),
                _cell(row["payment_status"]),
                _cell(row["agency_code"]),
                _cell(row["dossier_code"]),
            ]
        )


def text_report(run: dict[str, Any], exceptions: list[dict[str, Any]]) -> str:
    """What a person reads in a terminal: the verdict, the counts, the money, what to do."""
    out = [
        f"Reconciliation {run['id']}: {run['bank']} {run['business_date']} — {run['status']}",
    ]
    if run["status"] == "failed":
        out.append(f"  the statement could not be read: {run['error']}")
        out.append("  no payment was changed.")
        return "\n".join(out) + "\n"
    totals, summary = run["totals"], run["summary"]
    statement = summary.get("statement", {})
    out.append(
        f"  statement: {statement.get('lines', 0):,} lines, {statement.get('amount', 0):,} VND, "
        f"fees {statement.get('fee', 0):,} VND (sha-256 {run['statement_sha256']})"
    )
    out.append("")
    out.append(f"  {'class':<28}{'count':>10}{'amount VND':>20}")
    for name, title in CLASS_TITLES.items():
        count = run["counts"].get(name, 0)
        amount = totals.get(name, 0)
        out.append(f"  {title:<28}{count:>10,}{amount:>20,}")
    if summary.get("by_agency"):
        out.append("")
        out.append("  reconciled by agency:")
        for agency, row in summary["by_agency"].items():
            out.append(f"    {agency:<26}{row['count']:>10,}{row['amount']:>20,}")
    if summary.get("by_fee_kind"):
        out.append("  reconciled by fee kind:")
        for kind, amount in summary["by_fee_kind"].items():
            out.append(f"    {kind:<26}{'':>10}{amount:>20,}")
    open_ = [e for e in exceptions if e["status"] == "open"]
    out.append("")
    out.append(f"  {len(open_):,} exception(s) to resolve" + (":" if open_ else "."))
    for e in open_[:50]:
        where = f"line {e['line']}" if e["line"] is not None else "hub only"
        out.append(
            f"    {e['id']}  {e['class']:<18} {where:<12} {e['reference'] or '-':<14} "
            f"{(e['amount'] or 0):>14,} VND  payment {e['payment_id'] or '-'}"
        )
    if len(open_) > 50:
        out.append(f"    … and {len(open_) - 50:,} more (see --format csv)")
    return "\n".join(out) + "\n"


def json_report(run: dict[str, Any], exceptions: list[dict[str, Any]]) -> str:
    return json.dumps({**run, "exceptions": exceptions}, ensure_ascii=False, indent=2) + "\n"


def html_report(run: dict[str, Any], exceptions: list[dict[str, Any]]) -> str:
    """A self-contained page to mail or archive: summary, money, exceptions."""
    e = html.escape
    counts = "".join(
        f"<tr><td>{e(title)}</td><td class=n>{run['counts'].get(name, 0):,}</td>"
        f"<td class=n>{run['totals'].get(name, 0):,}</td></tr>"
        for name, title in CLASS_TITLES.items()
    )
    rows = "".join(
        f"<tr><td>{e(x['id'])}</td><td>{e(CLASS_TITLES.get(x['class'], x['class']))}</td>"
        f"<td>{x['line'] if x['line'] is not None else 'hub only'}</td>"
        f"<td>{e(x['reference'] or '')}</td><td class=n>{(x['amount'] or 0):,}</td>"
        f"<td>{e(x['payment_id'] or '')}</td><td>{e(x['status'])}</td></tr>"
        for x in exceptions
    )
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        f"<title>Reconciliation {e(run['bank'])} {e(run['business_date'])}</title>"
        "<style>body{font:14px system-ui;margin:2em}td,th{padding:.2em .6em;"
        "border-bottom:1px solid #ddd;text-align:left}.n{text-align:right}</style>"
        f"<h1>{e(run['bank'])} — {e(run['business_date'])}</h1>"
        f"<p>Run {e(run['id'])}: <b>{e(run['status'])}</b>"
        + (f" — {e(run['error'] or '')}" if run["status"] == "failed" else "")
        + f"<br>Statement sha-256 {e(run['statement_sha256'] or '')}</p>"
        "<table><tr><th>Class<th>Count<th>Amount (VND)</tr>"
        f"{counts}</table><h2>Exceptions</h2>"
        "<table><tr><th>Id<th>Class<th>Line<th>Reference<th>Amount<th>Payment<th>Status</tr>"
        f"{rows}</table></html>\n"
    )


async def load_exceptions(conn: Any, run_id: str) -> list[dict[str, Any]]:
    return [public_exception(row) for row in await store.list_exceptions(conn, run_id=run_id)]
