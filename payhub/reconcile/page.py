"""The finance page, rendered on the server: plain HTML and forms, no script needed.

What a finance officer does each morning, top to bottom: see which statements were
reconciled and how they came out, the money per bank, agency and fee kind, then work
through the open exceptions (filter, read, resolve with a note).
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urlencode

from payhub.reconcile.report import CLASS_TITLES
from payhub.reconcile.resolve import RESOLUTIONS

STYLE = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,sans-serif;color:#1d2733;
background:#f4f6f9}header{background:#12355b;color:#fff;padding:.8em 2em;display:flex;
justify-content:space-between;align-items:center}header h1{font-size:1.2em;margin:0}
header a{color:#cfe0f5}main{padding:1em 2em 3em}section{background:#fff;border-radius:8px;
box-shadow:0 1px 3px #0002;padding:1em 1.2em;margin:0 0 1.2em}h2{font-size:1.05em;
margin:0 0 .6em}table{border-collapse:collapse;width:100%}th,td{padding:.35em .6em;
border-bottom:1px solid #e5e9f0;text-align:left;vertical-align:top}th{background:#f0f3f7;
font-weight:600}.n{text-align:right;font-variant-numeric:tabular-nums}.badge{padding:.1em
.5em;border-radius:1em;font-size:.85em;white-space:nowrap}.completed,.resolved{background:
#dff3e4;color:#17692f}.failed,.open{background:#fde2e1;color:#9b1c1c}.running{background:
#fff3cd}.cards{display:flex;gap:1em;flex-wrap:wrap}.card{flex:1;min-width:12em;border:1px
solid #e5e9f0;border-radius:6px;padding:.6em .8em}.card b{font-size:1.3em;display:block}
form.filters{display:flex;gap:.8em;align-items:end;margin-bottom:.8em;flex-wrap:wrap}
label{display:flex;flex-direction:column;font-size:.85em;color:#4a5868}select,input,button{
font:inherit;padding:.25em .4em}button{background:#12355b;color:#fff;border:0;
border-radius:4px;padding:.3em .8em;cursor:pointer}.resolve{display:flex;gap:.3em;
flex-wrap:wrap}.resolve input[name=note]{min-width:14em}.notice{background:#e7f1fb;
border-left:4px solid #12355b;padding:.6em 1em;margin-bottom:1em}.muted{color:#6b7785}
"""


HINTS = {
    "missing_at_bank": "the hub has it paid; the bank's statement does not",
    "unknown_reference": "money at the bank for no payment of ours",
    "amount_mismatch": "the bank's amount differs from the payment's",
    "duplicate": "the bank lists this reference again: paid twice?",
    "status_mismatch": "paid at the bank, but failed or cancelled here",
    "previous_day": "the hub saw it the day before (cut-off)",
    "next_day": "the hub saw it the day after (cut-off)",
}
"""What each exception class asks a person to check, under its name on the page."""


def _money(value: Any) -> str:
    return f"{int(value or 0):,}"


def _badge(text: str) -> str:
    return f'<span class="badge {escape(text)}">{escape(text)}</span>'


def _options(values: list[tuple[str, str]], chosen: str | None) -> str:
    return "".join(
        f'<option value="{escape(v)}"{" selected" if v == (chosen or "") else ""}>'
        f"{escape(label)}</option>"
        for v, label in values
    )


def _bank_totals(runs: list[dict[str, Any]]) -> str:
    """Money per bank over the latest completed run of each bank and day shown."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:  # newest first
        if run["status"] == "completed":
            latest.setdefault((run["bank"], run["business_date"]), run)
    per_bank: dict[str, dict[str, int]] = {}
    for (bank, _), run in latest.items():
        row = per_bank.setdefault(bank, {"days": 0, "amount": 0, "fee": 0, "exceptions": 0})
        statement = run["summary"].get("statement", {})
        row["days"] += 1
        row["amount"] += int(statement.get("amount", 0))
        row["fee"] += int(statement.get("fee", 0))
        row["exceptions"] += sum(
            n for k, n in run["counts"].items() if k not in ("matched", "settled_by_statement")
        )
    cards = "".join(
        f'<div class="card"><span class="muted">{escape(bank)} · {row["days"]} day(s)</span>'
        f"<b>{_money(row['amount'])} VND</b>fees {_money(row['fee'])} VND · "
        f"{row['exceptions']:,} exception(s) found</div>"
        for bank, row in sorted(per_bank.items())
    )
    return cards or '<p class="muted">No completed reconciliation yet.</p>'


def _runs_table(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return (
            '<p class="muted">No reconciliation yet: run <code>payhub reconcile</code> '
            "or POST a statement to /v1/finance/reconciliations.</p>"
        )
    rows = []
    for run in runs:
        counts = run["counts"]
        exceptions = sum(
            n for k, n in counts.items() if k not in ("matched", "settled_by_statement")
        )
        statement = run["summary"].get("statement", {})
        view = "/finance?" + urlencode({"run": run["id"], "status": ""})
        detail = (
            escape(run["error"] or "")
            if run["status"] == "failed"
            else f'<a href="{escape(view)}">exceptions</a> · '
            f'<a href="/finance/runs/{escape(run["id"])}/report.csv">report.csv</a>'
        )
        rows.append(
            f"<tr><td>{escape(run['business_date'])}</td><td>{escape(run['bank'])}</td>"
            f"<td>{_badge(run['status'])}</td><td class=n>{run['line_count']:,}</td>"
            f"<td class=n>{_money(statement.get('amount'))}</td>"
            f"<td class=n>{counts.get('matched', 0):,}</td>"
            f"<td class=n>{counts.get('settled_by_statement', 0):,}</td>"
            f"<td class=n>{exceptions:,}</td><td>{detail}</td></tr>"
        )
    return (
        "<table><tr><th>Business day</th><th>Bank</th><th>Status</th><th class=n>Lines</th>"
        "<th class=n>Statement VND</th><th class=n>Matched</th><th class=n>Settled by "
        "statement</th><th class=n>Exceptions</th><th></th></tr>" + "".join(rows) + "</table>"
    )


def _run_detail(run: dict[str, Any]) -> str:
    totals, summary = run["totals"], run["summary"]
    classes = "".join(
        f"<tr><td>{escape(title)}</td><td class=n>{run['counts'].get(name, 0):,}</td>"
        f"<td class=n>{_money(totals.get(name))}</td></tr>"
        for name, title in CLASS_TITLES.items()
    )
    agencies = "".join(
        f"<tr><td>{escape(code)}</td><td class=n>{row['count']:,}</td>"
        f"<td class=n>{_money(row['amount'])}</td></tr>"
        for code, row in summary.get("by_agency", {}).items()
    )
    kinds = "".join(
        f"<tr><td>{escape(kind)}</td><td class=n>{_money(amount)}</td></tr>"
        for kind, amount in summary.get("by_fee_kind", {}).items()
    )
    return (
        f"<h2>{escape(run['bank'])} · {escape(run['business_date'])} "
        f'<span class="muted">({escape(run["id"])})</span></h2><div class="cards">'
        f'<div class="card"><table><tr><th>Class</th><th class=n>Count</th>'
        f"<th class=n>VND</th></tr>{classes}</table></div>"
        f'<div class="card"><table><tr><th>Agency</th><th class=n>Paid</th>'
        f"<th class=n>VND</th></tr>{agencies}</table></div>"
        f'<div class="card"><table><tr><th>Fee kind</th><th class=n>VND</th></tr>{kinds}'
        "</table></div></div>"
    )


def _exceptions(exceptions: list[dict[str, Any]], form_token: str, back: str) -> str:
    if not exceptions:
        return '<p class="muted">No exception matches these filters.</p>'
    suggestions = "".join(f'<option value="{escape(r)}">' for r in RESOLUTIONS)
    rows = []
    for x in exceptions:
        if x["status"] == "open":
            action = (
                f'<form class="resolve" method="post" action="/finance/exceptions/'
                f'{escape(x["id"])}/resolve"><input type="hidden" name="form_token" '
                f'value="{escape(form_token)}"><input type="hidden" name="back" '
                f'value="{escape(back)}"><input name="resolution" list="resolutions" '
                'placeholder="resolution" required size="12"><input name="note" '
                'placeholder="why (who you called, what was done)" required>'
                "<button>Resolve</button></form>"
            )
        else:
            action = (
                f"{_badge('resolved')} <b>{escape(x['resolution'] or '')}</b> by "
                f"{escape(x['resolved_by'] or '')} at {escape(x['resolved_at'] or '')}"
                f"<br><span class=muted>{escape(x['note'] or '')}</span>"
            )
        hub = (
            f"{escape(x['payment_id'])}<br><span class=muted>{escape(x['payment_status'] or '')}"
            f" · {_money(x['payment_amount'])} VND · {escape(x['agency_code'] or '')} · "
            f"{escape(x['dossier_code'] or '')}</span>"
            if x["payment_id"]
            else '<span class="muted">no payment</span>'
        )
        line = f"line {x['line']}" if x["line"] is not None else "hub only"
        rows.append(
            f"<tr><td>{escape(CLASS_TITLES.get(x['class'], x['class']))}"
            f"<br><span class=muted>{escape(HINTS.get(x['class'], ''))}</span></td>"
            f"<td>{escape(x['bank'])}<br><span class=muted>{escape(x['business_date'])}</span></td>"
            f"<td>{line}</td><td><code>{escape(x['reference'] or '')}</code></td>"
            f"<td class=n>{_money(x['amount'])}</td><td>{hub}</td><td>{action}</td></tr>"
        )
    return (
        f'<datalist id="resolutions">{suggestions}</datalist>'
        "<table><tr><th>Class</th><th>Bank / day</th><th>Statement</th><th>Reference</th>"
        "<th class=n>VND</th><th>Hub payment</th><th>Resolution</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def render(
    *,
    user: str,
    runs: list[dict[str, Any]],
    exceptions: list[dict[str, Any]],
    filters: dict[str, str | None],
    banks: list[str],
    form_token: str,
    notice: str | None,
) -> str:
    run_id = filters.get("run_id")
    chosen = next((r for r in runs if r["id"] == run_id), None) or next(
        (r for r in runs if r["status"] == "completed"), None
    )
    query = {
        k: v
        for k, v in (
            ("bank", filters.get("bank")),
            ("class", filters.get("kind")),
            ("status", filters.get("status") or ""),
            ("run", run_id),
        )
        if v is not None
    }
    back = "/finance?" + urlencode(query)
    bank_choices = [("", "all"), *((b, b) for b in banks)]
    class_choices = [("", "all"), *CLASS_TITLES.items()]
    status_choices = [("open", "open"), ("resolved", "resolved"), ("", "all")]
    filtered = any(query.get(k) for k in ("bank", "class", "run"))
    filter_form = (
        '<form class="filters" method="get" action="/finance">'
        f'<label>Bank<select name="bank">{_options(bank_choices, filters.get("bank"))}'
        "</select></label>"
        f'<label>Class<select name="class">{_options(class_choices, filters.get("kind"))}'
        "</select></label>"
        '<label>Status<select name="status">'
        f"{_options(status_choices, filters.get('status') or '')}</select></label>"
        + (f'<input type="hidden" name="run" value="{escape(run_id)}">' if run_id else "")
        + "<button>Filter</button>"
        + (' <a href="/finance">clear</a>' if filtered else "")
        + "</form>"
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width'>"
        f"<title>PayHub finance</title><style>{STYLE}</style></head><body>"
        f"<header><h1>PayHub · Finance reconciliation</h1><span>{escape(user)} · "
        '<a href="/finance/logout">sign out</a></span></header><main>'
        + (f'<div class="notice">{escape(notice)}</div>' if notice else "")
        + f'<section><h2>Per bank</h2><div class="cards">{_bank_totals(runs)}</div></section>'
        + f"<section><h2>Runs</h2>{_runs_table(runs)}</section>"
        + (f"<section>{_run_detail(chosen)}</section>" if chosen else "")
        + "<section><h2>Exceptions"
        + (f' <span class="muted">of run {escape(run_id)}</span>' if run_id else "")
        + f"</h2>{filter_form}{_exceptions(exceptions, form_token, back)}</section>"
        "</main></body></html>"
    )


def signed_out(config: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>PayHub finance</title>"
        f"<style>{STYLE}</style></head><body><header><h1>PayHub · Finance</h1></header><main>"
        "<section><h2>Sign in</h2><p>Open the link printed by</p>"
        f"<pre>payhub finance login --config {escape(config)} --user USER</pre>"
        "<p>on the hub's machine. A link works once, for a few minutes.</p></section>"
        "</main></body></html>"
    )
