"""The portal-facing routes of CONTRACT §3–4: payments, dossiers, events."""

from __future__ import annotations

import json
from typing import Any

import structlog
from aiohttp import web

from payhub import keys
from payhub.api.middleware import BODY, HELD_NONCE, PRINCIPAL
from payhub.api.problems import json_response
from payhub.domain.requests import parse_payment_request, parse_refund_request
from payhub.errors import FieldError, ProblemError
from payhub.service.events import events_page

routes = web.RouteTableDef()

MAX_EVENTS_PAGE = 500
_DOSSIER_CODE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def _portal(request: web.Request) -> str:
    return request[PRINCIPAL].principal


def idempotency_key(request: web.Request) -> str:
    """The ``Idempotency-Key`` header: 1–255 visible ASCII characters."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        raise ProblemError(
            "idempotency_key_required", "this request needs an Idempotency-Key header"
        )
    if not 1 <= len(key) <= 255 or not all(0x21 <= ord(ch) <= 0x7E for ch in key):
        raise ProblemError(
            "malformed_request", "Idempotency-Key must be 1–255 visible ASCII characters"
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
    unknown = set(request.query) - {"dossier"}
    if unknown:
        raise ProblemError(
            "validation_failed",
            "unknown query parameter",
            errors=[FieldError(name, "unknown parameter") for name in sorted(unknown)],
        )
    dossier = request.query.get("dossier")
    if dossier is None or not _valid_dossier_code(dossier):
        raise ProblemError(
            "validation_failed",
            "list payments by dossier: ?dossier=<code>",
            errors=[FieldError("dossier", "required, 1–64 chars of [A-Za-z0-9._-]")],
        )
    found = await request.app[keys.PAYMENTS].list_for_dossier(_portal(request), dossier)
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
    code = request.match_info["code"]
    if not _valid_dossier_code(code):
        raise ProblemError("not_found", "no such dossier")
    summary = await request.app[keys.PAYMENTS].dossier(_portal(request), code)
    return json_response(summary)


@routes.get("/v1/events")
async def list_events(request: web.Request) -> web.Response:
    """Event pull: the portal's events in creation order, after a given event id."""
    errors = [
        FieldError(name, "unknown parameter") for name in set(request.query) - {"after", "limit"}
    ]
    limit_text = request.query.get("limit", "100")
    limit = int(limit_text) if limit_text.isdigit() else 0
    if not 1 <= limit <= MAX_EVENTS_PAGE:
        errors.append(FieldError("limit", f"an integer 1–{MAX_EVENTS_PAGE}"))
    if errors:
        raise ProblemError("validation_failed", "bad query parameters", errors=errors)
    page, has_more = await events_page(
        request.app[keys.LEDGER], _portal(request), after=request.query.get("after"), limit=limit
    )
    return json_response({"data": page, "has_more": has_more})


def _valid_dossier_code(code: str) -> bool:
    return 1 <= len(code) <= 64 and all(ch in _DOSSIER_CODE_CHARS for ch in code)
