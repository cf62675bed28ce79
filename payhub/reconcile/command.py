"""``payhub reconcile`` and ``payhub finance login``: what the command line runs.

The command runs against the configured database like a hub process would (its own
ledger for the settlements), so it can run beside a serving hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import BinaryIO, TextIO

from payhub.domain.clock import system_clock
from payhub.errors import ConfigError
from payhub.reconcile import report
from payhub.reconcile.engine import Reconciler, RunRequest
from payhub.reconcile.formats import bank_account, reader_for, usual_format
from payhub.reconcile.session import login_url
from payhub.settings import Settings, load_settings
from payhub.store import reconciliation as store

OUTPUT_FORMATS = ("text", "csv", "json", "html")


def business_date(text: str) -> date:
    """``YYYY-MM-DD``, or a one-line error."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--date {text!r} is not a date YYYY-MM-DD") from None


class _Bar:
    """A one-line progress bar on a terminal's standard error; silent elsewhere."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = max(total, 1)
        self.out = out if out.isatty() else None

    def __call__(self, done: int, lines: int) -> None:
        if self.out is None:
            return
        share = min(done / self.total, 1.0)
        filled = int(share * 30)
        self.out.write(
            f"\r  reading [{'#' * filled}{'.' * (30 - filled)}] {share:4.0%} {lines:,} lines"
        )
        self.out.flush()

    def close(self) -> None:
        if self.out is not None:
            self.out.write("\n")


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for this one-shot command.

    A million-line statement allocates millions of short-lived tuples; each batch lives
    long enough to be promoted, so the collector keeps re-walking every object the
    process holds: 1.4 s of a 12 s run on the bench. Reference counting still frees all
    of it; the little a run leaves in cycles is collected when the command ends. Only the
    command does this: a serving hub keeps its collector.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def run_reconcile(
    *,
    config: Path,
    bank: str,
    day: str,
    statement: Path,
    output: str,
    out: Path | None,
    statement_format: str | None,
) -> int:
    """Check the arguments, then reconcile ``statement`` and write the report."""
    settings = load_settings(config)
    if bank not in settings.banks:
        raise ConfigError(f"--bank {bank!r} is not configured (known: {', '.join(settings.banks)})")
    when = business_date(day)
    fmt = statement_format or usual_format(settings.banks[bank].connector)
    reader_for(fmt)
    if not statement.is_file():
        raise ConfigError(f"{statement} is not a file")
    with statement.open("rb") as source, _collector_paused():
        target = out.open("w", encoding="utf-8", newline="") if out else sys.stdout
        try:
            status, error = asyncio.run(
                _reconcile(
                    settings,
                    RunRequest(bank, when, fmt, "cli", bank_account(settings.banks[bank])),
                    source,
                    statement.stat().st_size,
                    output,
                    target,
                )
            )
        finally:
            if out:
                target.close()
    if out:
        print(f"report written to {out}", file=sys.stderr)
    if status != "completed":
        print(f"payhub: reconciliation failed: {error}", file=sys.stderr)
        return 1
    return 0


async def _reconcile(
    settings: Settings,
    request: RunRequest,
    source: BinaryIO,
    size: int,
    output: str,
    target: TextIO,
) -> tuple[str, str | None]:
    from payhub.operations import operator_ledger

    async with operator_ledger(settings) as ledger:
        engine = ledger.engine
        bar = _Bar(size, sys.stderr)
        try:
            run = await Reconciler(engine, ledger, system_clock).run(request, source, progress=bar)
        finally:
            bar.close()
        public = report.public_run(run)
        async with engine.connect() as conn:
            exceptions = await report.load_exceptions(conn, run["id"])
            if output == "csv":
                async for line in report.csv_lines(store.report_rows(conn, run["id"])):
                    target.write(line)
            elif output == "json":
                target.write(report.json_report(public, exceptions))
            elif output == "html":
                target.write(report.html_report(public, exceptions))
            else:
                target.write(report.text_report(public, exceptions))
    return str(run["status"]), run["error"]


def finance_login(*, config: Path, user: str, minutes: int, base_url: str | None = None) -> int:
    """Print a short-lived link that opens the finance page signed in as ``user``."""
    settings = load_settings(config)
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"--url must be an http(s) address, not {base_url!r}")
    print(login_url(settings, user, minutes=minutes, now=system_clock(), base_url=base_url))
    print(
        f"(valid once, for {minutes} minute(s); the page then keeps a session cookie)",
        file=sys.stderr,
    )
    return 0
