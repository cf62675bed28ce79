"""A collecting bank in a box: VietQR transfers in, signed camt.054 pushed, camt.053 per day.

``create_simulator(options, notify_url=..., clock=...)`` plays the bank that holds the
agency's collection account (options ``bin``, ``account`` and
``simulator_signing_key_file``, the PEM private key whose public half the hub holds as
``bank_public_key``, or that PEM inline as ``simulator_signing_key``; optional ``seed``
and ``faults``). The hub never tells this bank about an order: the bank learns of
a transfer from the payer, who scans the QR (or types the reference) in a banking app.

Routes, relative to its root:

- ``GET /qr?payload=…``: the page a payer sees, with the QR as a PNG
  (``GET /qr.png?payload=…``); a payload whose CRC or template is wrong is refused;
- the control routes of ``banks.simulation.control``: ``POST /_sim/pay`` takes as
  ``reference`` a QR payload, a ``/qr?payload=`` URL, a bank reference or any transfer
  text; ``amount`` is what the payer really transfers (default: the QR's amount; required
  when the bank has never seen the QR). Outcomes: ``success``, ``pay_twice`` (two
  transfers), ``wrong_amount`` (``amount`` if given, else 1,000 VND less),
  ``insufficient_funds`` (the payer's bank refuses: nothing arrives), ``late``, ``abandon``;
- ``POST /_sim/flush``: sends every held credit in one camt.054 (see ``hold_credits``).

Knobs of its own beside the toolkit's (``PUT /_sim/faults``):

==================  =======  ===================================================================
knob                default  effect
==================  =======  ===================================================================
``mangle_text``     0        fraction of transfers whose text the payer's app rewrites (prefix
                             ``MBVCB.1234567.``, suffix ``.CT tu 0123456789``, case, groups)
``pending_first``   false    each booked credit is notified ``PDNG`` first, then ``BOOK``
``notify_status``   BOOK     ``PDNG`` or ``INFO``: credits are only ever notified so (never
                             booked, absent from the statement)
``hold_credits``    false    credits wait for ``POST /_sim/flush``, then go in one document
==================  =======  ===================================================================

The toolkit's confirmation faults apply to each camt.054 document: lost, duplicated
(also concurrently), reordered, tampered (an amount raised after signing), bad signature
(signed by another key), resent on the bank's schedule until the hub answers 200.
"""

from __future__ import annotations

import html
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urlsplit

from aiohttp import web

from banks.simulation import (
    Faults,
    OrderRejected,
    Outgoing,
    PendingConfirmation,
    SimulatedBank,
    StatementFile,
    business_day,
    pages,
    simulator_app,
)
from banks.simulation.control import BANK
from banks.simulation.faults import KnobReader, flag, fraction
from banks.vietqr import cash_report, signing
from banks.vietqr.cash_report import Account, Credit
from banks.vietqr.emvco import VietQRError, decode_vietqr, qr_png
from payhub.domain.clock import Clock, system_clock
from payhub.errors import ConfigError

TAMPER_DELTA = 1_000
WRONG_AMOUNT_DELTA = 1_000
OUTCOMES = ("success", "pay_twice", "wrong_amount", "insufficient_funds")
_PREFIXES = ("MBVCB.{n7}.", "IBFT ", "{n6}-", "TKThe :{n10}, ", "")
_SUFFIXES = (".CT tu {n10} NGUYEN VAN A", " Ma GD {n8}", "- Ma giao dich/ Trace {n6}", "")
_GROUPINGS = ((12,), (4, 4, 4), (6, 6), (2, 10), (3, 3, 3, 3))


def _status(name: str, value: Any) -> str:
    if value not in cash_report.STATUSES:
        raise ValueError(f"{name} must be one of {list(cash_report.STATUSES)}")
    return str(value)


@dataclass(frozen=True)
class VietqrFaults(Faults):
    """The toolkit's knobs plus this bank's (module docstring)."""

    mangle_text: float = 0.0
    pending_first: bool = False
    notify_status: str = cash_report.BOOKED
    hold_credits: bool = False

    READERS: ClassVar[dict[str, KnobReader]] = {
        **Faults.READERS,
        "mangle_text": fraction,
        "pending_first": flag,
        "notify_status": _status,
        "hold_credits": flag,
    }


@dataclass
class Transfer:
    """What a payer is about to send: a text (the QR's purpose, or typed) and an amount."""

    text: str
    amount: int | None
    credits: list[Credit] = field(default_factory=list)


class CollectingBank(SimulatedBank[Transfer]):
    """The bank's books for one collection account."""

    outcomes = OUTCOMES
    faults_class = VietqrFaults

    def __init__(self, *, account: Account, key: signing.PrivateKey, **common: Any) -> None:
        super().__init__(**common)
        self.account = account
        self.key = key
        self.forger: signing.PrivateKey = signing.load_private_key(signing.new_demo_key_pair()[0])
        self.seen: dict[str, int] = {}
        """QR purposes shown to payers, with their amounts: a typed reference finds its QR."""
        self.credits: list[Credit] = []
        self.held: list[Credit] = []
        self._last_transaction = 0

    # --- payers --------------------------------------------------------------------

    def read_qr(self, payload: str) -> Transfer:
        try:
            qr = decode_vietqr(payload)
        except VietQRError as exc:
            raise OrderRejected("invalid_qr", str(exc)) from exc
        if (qr.bin, qr.account) != (self.account.bin, self.account.number):
            raise OrderRejected("wrong_account", "this QR pays into another account")
        if qr.purpose and qr.amount is not None:
            self.seen[qr.purpose] = qr.amount
        return Transfer(text=qr.purpose or "", amount=qr.amount)

    def resolve(self, reference: str, amount: int | None) -> Transfer:
        if "?" in reference and "payload=" in reference:
            reference = dict(parse_qsl(urlsplit(reference).query)).get("payload", "")
        if reference.startswith("000201"):
            return self.read_qr(reference)
        known = self.seen.get(reference)
        if known is None and amount is None:
            raise OrderRejected(
                "amount_required", "this bank never showed that QR: say the amount transferred"
            )
        return Transfer(text=reference, amount=known if known is not None else amount)

    def order_reference(self, order: Transfer) -> str:
        return order.text

    def next_transaction(self) -> str:
        self._last_transaction += 1
        return f"FT{self.clock():%y%m%d}{self._last_transaction:06d}"

    def _digits(self, count: int) -> str:
        return "".join(str(self.rng.randrange(10)) for _ in range(count))

    def mangle(self, text: str) -> str:
        """The text as a banking app sends it: regrouped, re-cased, between its own words."""
        grouping = self.rng.choice(_GROUPINGS) if len(text) == 12 else (len(text),)
        pieces, start = [], 0
        for size in grouping:
            pieces.append(text[start : start + size])
            start += size
        if any(piece.upper().startswith("PH") for piece in pieces[1:]):
            # A group starting with PH reads as a second reference: the hub then names
            # none (the credit goes to a person). Apps do not regroup; payers who type
            # in groups are played only where that cannot happen.
            pieces = [text]
        body = self.rng.choice((" ", "-", ".")).join(pieces)
        body = self.rng.choice((body, body.lower(), body.upper()))
        numbers = {f"n{n}": self._digits(n) for n in (6, 7, 8, 10)}
        prefix = self.rng.choice(_PREFIXES).format(**numbers)
        suffix = self.rng.choice(_SUFFIXES).format(**numbers)
        mangled = f"{prefix}{body}{suffix}"
        return mangled if mangled != text else f"IBFT {text}"  # an app always adds something

    async def play(
        self, order: Transfer, outcome: str, amount: int | None, faults: Faults
    ) -> dict[str, Any]:
        report: dict[str, Any] = {"reference": order.text, "outcome": outcome}
        if outcome in ("abandon", "insufficient_funds"):
            return report | {"payments": [], "confirmations": []}
        assert isinstance(faults, VietqrFaults)
        expected = order.amount if order.amount is not None else amount
        assert expected is not None  # resolve() asks for an amount otherwise
        if amount is not None:
            paid = amount
        elif outcome == "wrong_amount":
            paid = expected - WRONG_AMOUNT_DELTA if expected > WRONG_AMOUNT_DELTA else expected * 2
        else:
            paid = expected
        made: list[Credit] = []
        for _ in range(2 if outcome == "pay_twice" else 1):
            text = self.mangle(order.text) if self.roll(faults.mangle_text) else order.text
            credit = Credit(
                transaction_id=self.next_transaction(),
                end_to_end_id=f"NPS{self._digits(12)}",
                amount=paid,
                text=text,
                at=self.clock(),
                status=faults.notify_status,
            )
            order.credits.append(credit)
            self.credits.append(credit)
            made.append(credit)
        report["payments"] = [
            {"transaction_id": c.transaction_id, "amount": c.amount, "text": c.text} for c in made
        ]
        if faults.hold_credits:
            self.held.extend(made)
            return report | {"confirmations": [], "held": len(self.held)}
        pending = [item for credit in made for item in self.notifications([credit], faults)]
        report["confirmations"] = await self.deliver(pending, faults)
        return report

    async def flush(self, faults: VietqrFaults) -> dict[str, Any]:
        """Every held credit, in one document."""
        held, self.held = self.held, []
        if not held:
            return {"credits": 0, "confirmations": []}
        confirmations = await self.deliver(self.notifications(held, faults), faults)
        return {"credits": len(held), "confirmations": confirmations}

    # --- notifications ---------------------------------------------------------------

    def notifications(
        self, credits: list[Credit], faults: VietqrFaults
    ) -> list[PendingConfirmation]:
        """The camt.054 documents of ``credits``: ``PDNG`` first when the knob says so."""
        documents = [credits]
        if faults.pending_first and all(c.status == cash_report.BOOKED for c in credits):
            pending = [
                Credit(
                    c.transaction_id, c.end_to_end_id, c.amount, c.text, c.at, cash_report.PENDING
                )
                for c in credits
            ]
            documents = [pending, credits]
        return [self._document(batch) for batch in documents]

    def _document(self, credits: list[Credit]) -> PendingConfirmation:
        message_id = f"VQR{secrets.token_hex(8).upper()}"
        body = cash_report.notification(message_id, self.clock(), self.account, credits)

        def build(forged: bool, tampered: bool) -> Outgoing:
            signature = signing.sign(self.forger if forged else self.key, body)
            sent = body
            if tampered:  # the first credit's amounts raised after signing
                first = credits[0].amount
                old = f'Ccy="VND">{first}</'.encode()
                sent = body.replace(old, f'Ccy="VND">{first + TAMPER_DELTA}</'.encode())
            headers = {"Content-Type": "application/xml", signing.HEADER: signature}
            return Outgoing("POST", self.notify_url, sent, headers)

        return PendingConfirmation(",".join(c.text for c in credits), build)

    def read_answer(self, status: int, body: bytes) -> dict[str, Any]:
        answer: dict[str, Any] = {"http_status": status}
        try:
            outcomes = json.loads(body).get("outcomes")
        except (ValueError, AttributeError):
            return answer
        if isinstance(outcomes, list):
            answer["outcomes"] = outcomes
        return answer

    def accepted(self, answer: Mapping[str, Any]) -> bool:
        return answer.get("http_status") == 200

    def statement(self, day: date) -> StatementFile:
        """camt.053 of ``day``: the credits really booked that day, in booking order."""
        booked = sorted(
            (
                c
                for c in self.credits
                if c.status == cash_report.BOOKED and business_day(c.at) == day
            ),
            key=lambda c: (c.at, c.transaction_id),
        )
        data = cash_report.statement(f"STMT{day:%Y%m%d}", self.clock(), self.account, booked)
        return StatementFile(
            text=data.decode("utf-8"),
            content_type="application/xml",
            filename=f"vietqr-{day:%Y%m%d}.xml",
        )


COLLECTING_BANK = web.AppKey("vietqr_bank", CollectingBank)


def create_simulator(
    options: Mapping[str, Any], *, notify_url: str, clock: Clock | None = None
) -> web.Application:
    """The simulator app for one collection account; notifications go to ``notify_url``."""
    bin_, number = options.get("bin"), options.get("account")
    if not (isinstance(bin_, str) and isinstance(number, str)):
        raise ConfigError("the VietQR simulator needs bin and account")
    try:
        private = signing.load_private_key(_signing_key(options))
        faults = VietqrFaults.from_json(options.get("faults", {}))
    except ValueError as exc:
        raise ConfigError(f"VietQR simulator: {exc}") from exc
    bank = CollectingBank(
        account=Account(bin=bin_, number=number),
        key=private,
        notify_url=notify_url,
        clock=clock or system_clock,
        seed=options.get("seed"),
        faults=faults,
    )
    app = simulator_app(bank)
    app[COLLECTING_BANK] = bank
    app.router.add_get("/qr", qr_page)
    app.router.add_get("/qr.png", qr_image)
    app.router.add_post("/_sim/flush", flush)
    return app


def _signing_key(options: Mapping[str, Any]) -> str:
    """The bank's private key PEM: in ``simulator_signing_key_file``, or given inline."""
    path = options.get("simulator_signing_key_file")
    if isinstance(path, str):
        try:
            return Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read simulator_signing_key_file {path}: {exc}") from exc
    inline = options.get("simulator_signing_key")
    if isinstance(inline, str):
        return inline
    raise ValueError("give simulator_signing_key_file (a PEM private key) or simulator_signing_key")


def _shown(request: web.Request) -> tuple[CollectingBank, Transfer, str] | web.Response:
    bank = request.app[COLLECTING_BANK]
    payload = request.query.get("payload", "")
    try:
        transfer = bank.read_qr(payload)
    except OrderRejected as exc:
        return pages.page("Mã QR không hợp lệ", pages.error(exc.code, exc.message), status=400)
    return bank, transfer, payload


async def qr_page(request: web.Request) -> web.Response:
    shown = _shown(request)
    if isinstance(shown, web.Response):
        return shown
    bank, transfer, payload = shown
    rows = [
        ("Bank BIN", bank.account.bin),
        ("Account", bank.account.number),
        ("Amount", pages.vnd(transfer.amount or 0)),
        ("Transfer content", transfer.text),
    ]
    image = f'<p><img alt="VietQR" src="qr.png?payload={html.escape(quote(payload, safe=""))}"></p>'
    return pages.page("VietQR (simulator)", pages.details(rows) + image)


async def qr_image(request: web.Request) -> web.Response:
    shown = _shown(request)
    if isinstance(shown, web.Response):
        return shown
    return web.Response(body=qr_png(shown[2]), content_type="image/png")


async def flush(request: web.Request) -> web.Response:
    bank = request.app[COLLECTING_BANK]
    faults = bank.faults
    assert isinstance(faults, VietqrFaults)
    return web.json_response(await bank.flush(faults))


__all__ = ["BANK", "COLLECTING_BANK", "CollectingBank", "VietqrFaults", "create_simulator"]
