"""Bank ingress: confirmations (IPN / webhooks) posted by banks, in each bank's protocol.

The connector verifies the bank's own signature; there is no unsigned path. A message
may hold several confirmations (a camt.054 batches credits): each is applied in its own
unit of work, and the one answer, in the bank's protocol (VNPay's ``RspCode``, MoMo's
``204``, vietqr's ``200``), is only sent after every effect is committed.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from payhub import keys
from payhub.api.middleware import read_body
from payhub.connectors.port import (
    BankAnswer,
    Confirmation,
    ConfirmationOutcome,
    InboundMessage,
)
from payhub.errors import ConfirmationMalformed, ConfirmationSignatureInvalid, ProblemError

routes = web.RouteTableDef()
CONFIRMATION_LIMIT = 64 * 1024

log = structlog.get_logger("payhub.banks")


@routes.route("*", "/banks/{bank}/notify")
async def confirmation(request: web.Request) -> web.Response:
    bank = request.match_info["bank"]
    connector = request.app[keys.CONNECTORS].get(bank)
    if connector is None:
        raise ProblemError("not_found", "no such bank")
    if request.method not in ("GET", "POST"):
        raise ProblemError("method_not_allowed", "banks notify with GET or POST")
    message = InboundMessage(
        method=request.method,
        query=dict(request.query),
        headers=dict(request.headers),
        body=await read_body(request, CONFIRMATION_LIMIT),
    )
    structlog.contextvars.bind_contextvars(bank=bank)
    outcomes: list[ConfirmationOutcome] = []
    try:
        parsed = connector.parse_confirmation(message)
    except ConfirmationSignatureInvalid:
        log.info("confirmation", outcome=ConfirmationOutcome.SIGNATURE_INVALID.value)
        outcomes.append(ConfirmationOutcome.SIGNATURE_INVALID)
    except ConfirmationMalformed as exc:
        log.warning("confirmation_malformed", reason=str(exc))
        outcomes.append(ConfirmationOutcome.MALFORMED)
    else:
        # One by one, each in its own unit of work; the bank's answer covers the whole
        # message and is sent only once every confirmation's effect is committed.
        for item in parsed:
            outcome = await _apply(request, bank, item)
            log.info("confirmation", bank_reference=item.bank_reference, outcome=outcome.value)
            outcomes.append(outcome)
    metrics = request.app[keys.METRICS].confirmations
    for outcome in outcomes:
        metrics.labels(bank, outcome.value).inc()
    return _response(connector.answer_confirmations(outcomes))


async def _apply(request: web.Request, bank: str, item: Confirmation) -> ConfirmationOutcome:
    try:
        return await request.app[keys.PAYMENTS].confirm(bank, item)
    except Exception:
        # Nothing was committed: answer in the bank's protocol so that it retries
        # (VNPay: 99) rather than with an HTTP 500 it may not read.
        log.exception("confirmation_not_applied", bank_reference=item.bank_reference)
        return ConfirmationOutcome.ERROR


def _response(answer: BankAnswer) -> web.Response:
    return web.Response(status=answer.status, body=answer.body, content_type=answer.content_type)
