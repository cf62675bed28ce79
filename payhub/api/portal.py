"""The portal-facing routes of CONTRACT §3–4: payments, dossiers, events."""

from __future__ import annotations

import json
from typing import Any

import structlog
from aiohttp import web

from payhub import keys
from payhub.api.middleware import BODY, HELD_NONCE, PRINCIPAL
from payhub.api.problems import json_response
from payhub.api.schemas import (
    dossier_code,
    parse_events_query,
    parse_payment_list_query,
    parse_payment_request,
    parse_refund_request,
)
from payhub.errors import FieldError, ProblemError
from payhub.service.events import events_page

routes = web.RouteTableDef()


def _portal(request: web.Request) -> str:
    return request[PRINCIPAL].principal


def idempotency_key(request: web.Request) -> str:
    """The ``Idempotency-Key`` header: 1–255 visible ASCII characters.

    CONTRACT §2 gives one code for a key that is absent and for one that is not such a
    key (too long, empty, spaces or control characters): either way the request has no
    usable key, and a portal fixes both the same way.
    """
    key = request.headers.get("Idempotency-Key")
    if key is None:
        raise ProblemError(
            "idempotency_key_required", "this request needs an Idempotency-Key header"
        )
    if not 1 <= len(key) <= 255 or not all(0x21 <= ord(ch) <= 0x7E for ch in key):
        raise ProblemError(
            "idempotency_key_required", "Idempotency-Key must be 1–255 visible ASCII characters"
        )
    return key


def json_body(request: web.Request) -> Any:
    """The verified body as JSON; only ``application/json`` is accepted."""
    if request.content_type != "application/json":
        raise ProblemError("unsupported_media_type", "send the body as application/json")
    charset = request.charset
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise ProblemError("unsupported_media_type", "JSON bodies are UTF-8")
    raw = request[BODY]
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProblemError("malformed_request", "the body is not valid UTF-8 JSON") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@routes.post("/v1/payments")
async def create_payment(request: web.Request) -> web.Response:
    key = idempotency_key(request)
    body = json_body(request)
    service = request.app[keys.PAYMENTS]
    parsed = parse_payment_request(body, known_banks=request.app[keys.CONNECTORS].keys())
    held = request.get(HELD_NONCE)
    created = await service.create(
        _portal(request), key, parsed, nonce=held.taken if held is not None else None
    )
    structlog.contextvars.bind_contextvars(payment_id=created.payment.id)
    if created.replayed:
        return json_response(
            created.payment.to_public(), status=200, headers={"Idempotency-Replayed": "true"}
        )
    request.app[keys.METRICS].payments_created.labels(created.payment.bank).inc()
    return json_response(created.payment.to_public(), status=201)


@routes.get("/v1/payments")
async def list_payments(request: web.Request) -> web.Response:
    query = parse_payment_list_query(request.query)
    found = await request.app[keys.PAYMENTS].list_for_dossier(_portal(request), query.dossier)
    return json_response({"data": [p.to_public() for p in found]})


@routes.get("/v1/payments/{id}")
async def get_payment(request: web.Request) -> web.Response:
    payment = await request.app[keys.PAYMENTS].get(_portal(request), request.match_info["id"])
    return json_response(payment.to_public())


@routes.post("/v1/payments/{id}/cancel")
async def cancel_payment(request: web.Request) -> web.Response:
    raw = request[BODY]
    if raw.strip():
        body = json_body(request)
        if body != {}:
            raise ProblemError(
                "validation_failed",
                "cancel takes no fields",
                errors=[FieldError(str(k), "unknown field") for k in body]
                if isinstance(body, dict)
                else [],
            )
    payment = await request.app[keys.PAYMENTS].cancel(_portal(request), request.match_info["id"])
    return json_response(payment.to_public())


@routes.post("/v1/payments/{id}/refunds")
async def create_refund(request: web.Request) -> web.Response:
    key = idempotency_key(request)
    body = parse_refund_request(json_body(request))
    outcome = await request.app[keys.REFUNDS].refund(
        _portal(request), request.match_info["id"], key, body
    )
    if outcome.replayed:
        return json_response(
            outcome.refund.to_public(), status=200, headers={"Idempotency-Replayed": "true"}
        )
    return json_response(outcome.refund.to_public(), status=201)


@routes.get("/v1/dossiers/{code}")
async def get_dossier(request: web.Request) -> web.Response:
    # The create grammar: a code create refuses cannot name a dossier of this hub.
    code = dossier_code(request.match_info["code"])
    if code is None:
        raise ProblemError("not_found", "no such dossier")
    summary = await request.app[keys.PAYMENTS].dossier(_portal(request), code)
    return json_response(summary)


@routes.get("/v1/events")
async def list_events(request: web.Request) -> web.Response:
    """Event pull: the portal's events in creation order, after a given event id."""
    query = parse_events_query(request.query)
    page, has_more = await events_page(
        request.app[keys.LEDGER], _portal(request), after=query.after, limit=query.limit
    )
    return json_response({"data": page, "has_more": has_more})
