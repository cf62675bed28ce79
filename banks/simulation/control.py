"""The control routes every simulator serves (BANKS.md "Simulator control"), and its app.

- ``POST /_sim/pay`` ``{"reference": bank reference | payment_url | qr payload, "outcome":
  ..., "amount": VND, "delay_seconds": for "late", "faults": knobs for this payer only}``:
  plays that payer now (``late``: in the background after ``delay_seconds``, answers 202;
  ``abandon``: opens the page and leaves). Answers a report of the payments made and of
  each confirmation's delivery, with the hub's answers; 404 for a reference the bank
  does not know, 409 with the bank's ``code`` when the bank refuses the payment;
- ``PUT /_sim/faults`` replaces all knobs (omitted ones return to their defaults);
  ``GET /_sim/faults`` shows them;
- ``GET /_sim/statement?date=YYYY-MM-DD`` that Asia/Ho_Chi_Minh business day's statement;
- ``GET /_sim/confirmations`` every confirmation delivery attempt so far.

Bad input is a 400 ``{"error": ...}`` that names the problem, and changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import aiohttp
from aiohttp import web

from banks.simulation.bank import (
    ABANDON,
    LATE,
    OrderRejected,
    SimulatedBank,
    UnknownReference,
)

BANK: web.AppKey[SimulatedBank[Any]] = web.AppKey("simulated_bank", SimulatedBank)
MAX_DELAY_SECONDS = 3600


def simulator_app(bank: SimulatedBank[Any]) -> web.Application:
    """An app holding ``bank`` with the control routes; the bank adds its own routes."""
    app = web.Application()
    app[BANK] = bank

    async def http_client(app: web.Application) -> AsyncIterator[None]:
        # Background deliveries end before the client they use is closed.
        async with aiohttp.ClientSession() as session:
            bank._http = session
            yield
            await bank.stop()
            bank._http = None

    async def wake_sleepers(app: web.Application) -> None:
        bank.closing.set()

    app.cleanup_ctx.append(http_client)
    app.on_shutdown.append(wake_sleepers)
    app.router.add_post("/_sim/pay", control_pay)
    app.router.add_get("/_sim/faults", get_faults)
    app.router.add_put("/_sim/faults", put_faults)
    app.router.add_get("/_sim/statement", statement)
    app.router.add_get("/_sim/confirmations", confirmations)
    return app


def problem(message: str, status: int = 400, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def json_object(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except ValueError:
        return problem("body must be JSON")
    if not isinstance(body, dict):
        return problem("body must be a JSON object")
    return body


def positive_amount(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value > 0


async def control_pay(request: web.Request) -> web.Response:
    bank = request.app[BANK]
    body = await json_object(request)
    if isinstance(body, web.Response):
        return body
    reference, outcome = body.get("reference"), body.get("outcome", "success")
    if not isinstance(reference, str) or not reference.strip():
        return problem("reference must be a bank reference, a payment_url or a QR payload")
    known = (*bank.outcomes, LATE, ABANDON)
    if outcome not in known:
        return problem(f"outcome must be one of {list(known)}")
    amount = body.get("amount")
    if amount is not None and not positive_amount(amount):
        return problem("amount must be a positive whole number of VND")
    delay = body.get("delay_seconds", 1)
    if outcome == LATE and (
        isinstance(delay, bool)
        or not isinstance(delay, int | float)
        or not 0 <= delay <= MAX_DELAY_SECONDS
    ):
        return problem(f"delay_seconds must be between 0 and {MAX_DELAY_SECONDS}")
    try:
        faults = bank.faults_class.from_json(body.get("faults") or {}, base=bank.faults)
    except (ValueError, TypeError) as exc:
        return problem(str(exc))
    try:
        order = bank.resolve(reference.strip(), amount)
    except UnknownReference as exc:
        return problem(str(exc), status=404)
    except OrderRejected as exc:
        return problem(exc.message, code=exc.code)
    if outcome == LATE:
        bank.spawn(bank.pay_later(order, float(delay), amount, faults))
        answer = {"reference": bank.order_reference(order), "outcome": LATE}
        return web.json_response(answer | {"delay_seconds": delay}, status=202)
    try:
        report = await bank.play(order, outcome, amount, faults)
    except OrderRejected as exc:
        return problem(exc.message, status=409, code=exc.code)
    return web.json_response(report)


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[BANK].faults.to_json())


async def put_faults(request: web.Request) -> web.Response:
    bank = request.app[BANK]
    body = await json_object(request)
    if isinstance(body, web.Response):
        return problem("body must be a JSON object of fault knobs")
    try:
        bank.faults = bank.faults_class.from_json(body)
    except ValueError as exc:
        return problem(str(exc))
    return web.json_response(bank.faults.to_json())


async def statement(request: web.Request) -> web.Response:
    text = request.query.get("date", "")
    try:
        if len(text) != 10:
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        return problem("date must be YYYY-MM-DD")
    file = request.app[BANK].statement(day)
    return web.Response(
        text=file.text,
        content_type=file.content_type,
        headers={"Content-Disposition": f'attachment; filename="{file.filename}"'},
    )


async def confirmations(request: web.Request) -> web.Response:
    return web.json_response(request.app[BANK].confirmations)
