"""HTML pieces of a bank's pay page: one look for every simulator, everything escaped."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from datetime import datetime

from aiohttp import web

from payhub.domain.clock import to_vietnam


def page(title: str, body: str, *, status: int = 200) -> web.Response:
    """A whole page; ``body`` is HTML the caller already escaped."""
    text = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=text, status=status, content_type="text/html")


def details(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table of what the payer is about to pay."""
    cells = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
        for name, value in rows
    )
    return f"<table>{cells}</table>"


def outcome_form(action: str, hidden: Mapping[str, str], buttons: Iterable[tuple[str, str]]) -> str:
    """The payer's choices; ``action`` is relative so the page works under any prefix."""
    fields = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in hidden.items()
    )
    choices = "".join(
        f'<button type="submit" name="outcome" value="{html.escape(outcome)}">'
        f"{html.escape(label)}</button>"
        for outcome, label in buttons
    )
    return f'<form method="post" action="{html.escape(action)}">{fields}{choices}</form>'


def error(code: str, message: str) -> str:
    return f"<p>Code {html.escape(code)}: {html.escape(message)}</p>"


def vnd(amount: int) -> str:
    """``25.500 VND``: Vietnamese thousands separators."""
    return f"{amount:,} VND".replace(",", ".")


def deadline(moment: datetime) -> str:
    """A payment deadline as a payer in Việt Nam reads it: ``28/11/2026 10:15:00 (GMT+7)``."""
    return to_vietnam(moment).strftime("%d/%m/%Y %H:%M:%S") + " (GMT+7)"
