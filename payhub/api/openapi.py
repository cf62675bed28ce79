"""The OpenAPI 3.1 document the hub serves at ``GET /v1/openapi.json``, generated.

CONTRACT.md fixes the wire format; this document is where everything the contract leaves
open is written down for portal developers. Every body schema and every query parameter
is generated from the models that validate them (``payhub.api.schemas``) or describe them
(``payhub.api.responses``), so the document cannot promise what the hub refuses. What is
written here is only what no model holds: the routes, the security scheme, and which
problems each route can answer (codes from ``payhub.errors``). Everything is plain JSON
values so the web layer can ``json.dumps`` it as it is.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from payhub import __version__
from payhub.api import responses as answers
from payhub.api import schemas
from payhub.domain.requests import DOSSIER_CODE_PATTERN
from payhub.errors import PROBLEM_CODES

__all__ = ["EVENT_TYPES", "EXAMPLE_PAYMENT_REQUEST", "PROBLEM_WHEN", "openapi_document"]

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
EVENT_TYPES: Final = answers.EVENT_TYPES
EXAMPLE_PAYMENT_REQUEST: Final = schemas.EXAMPLE_PAYMENT_REQUEST

# When each problem is answered (CONTRACT §2 for the fixed ones).
PROBLEM_WHEN: Final[dict[str, str]] = {
    "malformed_request": "the body is not JSON or not an object, or a header has bad syntax",
    "idempotency_key_required": "the request needs an Idempotency-Key header of 1–255 "
    "visible ASCII characters",
    "digest_mismatch": "Content-Digest is missing or does not match the body",
    "signature_missing": "no Signature / Signature-Input fields",
    "signature_invalid": "wrong signature, unknown keyid, wrong alg, or a required component "
    "is not covered",
    "signature_expired": "the signature's created time is more than 300 s from the hub's clock",
    "signature_replayed": "the nonce was already used with this keyid in the last 600 s",
    "forbidden": "the principal may not use this route (a portal on /v1/finance, a finance "
    "user elsewhere)",
    "not_found": "unknown object, or another portal's",
    "method_not_allowed": "the route exists, but not with this method",
    "idempotency_conflict": "the Idempotency-Key was used before with a different body",
    "idempotency_in_flight": "the first request with this Idempotency-Key is still being "
    "processed; retry later",
    "invalid_state": "not allowed in the payment's current status",
    "payload_too_large": "a JSON body over 64 KiB, or a statement over the configured limit",
    "unsupported_media_type": "the body is not application/json (statements: not "
    "multipart/form-data)",
    "validation_failed": "a field, a query parameter or a business rule is violated; "
    "`errors` lists every one with its JSON path",
    "refund_not_supported": "the payment's bank cannot refund online",
    "rate_limited": "too many requests from this portal; wait for Retry-After seconds",
    "internal_error": "the hub failed; the answer carries the request id to report",
    "bank_unavailable": "no configured bank could accept the order now; nothing stays pending "
    "and the same Idempotency-Key may be retried",
    "not_ready": "the database is unreachable or its migrations are not current, or the hub "
    "is shutting down",
}

# Problems any signed /v1 request may get, and those only a request with a body may get.
_SIGNED: Final = (
    "malformed_request",
    "digest_mismatch",
    "signature_missing",
    "signature_invalid",
    "signature_expired",
    "signature_replayed",
    "forbidden",
    "rate_limited",
    "internal_error",
)
_WITH_BODY: Final = ("payload_too_large", "unsupported_media_type", "validation_failed")
_IDEMPOTENT: Final = ("idempotency_key_required", "idempotency_conflict", "idempotency_in_flight")

_SECURITY_DESCRIPTION: Final = """\
RFC 9421 HTTP Message Signatures (OpenAPI has no native scheme for them, so both fields are
declared as API-key headers and must be sent together). Every `/v1/*` request except
`GET /v1/openapi.json` carries one signature (any label) in `Signature-Input` and
`Signature`.

* Covered components, at least: `"@method"`, `"@path"`, `"@query"` (when the URL has
  one), `"content-digest"` and `"content-type"` when there is a body, and
  `"idempotency-key"` when that header is present.
* A request with a body carries `Content-Digest` (RFC 9530), `sha-256` or `sha-512` of the
  raw body, e.g. `sha-256=:<base64>:`; missing or wrong: `400 digest_mismatch`.
* Parameters: `created` (required, within ±300 s of the hub's clock), `keyid` (required;
  a key registered for one portal or finance user), `nonce` (required; accepted once per
  keyid within 600 s), `alg` (optional; must equal the key's registered algorithm).
* Algorithms: `ed25519` (the hub holds only the public key) and `hmac-sha256` (shared
  secret of at least 32 bytes).

A portal's key opens `/v1/payments`, `/v1/dossiers` and `/v1/events`, and only ever shows
that portal's objects (another portal's is `404 not_found`); a finance user's key opens
`/v1/finance/*`."""

_MODELS: Final[tuple[type[BaseModel], ...]] = (
    schemas.PaymentRequest,
    schemas.RefundRequest,
    answers.ResolveRequest,
    answers.ReconciliationUpload,
    answers.Payment,
    answers.PaymentList,
    answers.Refund,
    answers.DossierSummary,
    answers.EventPage,
    answers.WebhookPayload,
    answers.ReconciliationRun,
    answers.ReconciliationRunDetail,
    answers.ReconciliationException,
    answers.JwkSet,
    answers.Status,
    answers.Problem,
)


# --------------------------------------------------------------------------- schemas


def _tidy(node: Any) -> Any:
    """Pydantic's JSON Schema in the document's plain style.

    Titles go (the component name says it), ``anyOf: [X, null]`` becomes ``type: [x,
    "null"]`` where X is a plain typed schema, and ``default: null`` is dropped.
    """
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" or (key == "default" and value is None):
            continue
        if key in ("properties", "$defs"):
            out[key] = {name: _tidy(schema) for name, schema in value.items()}
        else:
            out[key] = _tidy(value)
    options = out.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        other = next(option for option in options if option != {"type": "null"})
        if isinstance(other.get("type"), str):
            del out["anyOf"]
            out = {**other, **out, "type": [other["type"], "null"]}
    return out


@cache
def _component_schemas() -> dict[str, Any]:
    _, top = models_json_schema(
        [(model, "validation") for model in _MODELS],
        ref_template="#/components/schemas/{model}",
    )
    generated: dict[str, Any] = _tidy(top["$defs"])
    return generated


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """A query model's fields as OpenAPI parameters; values are strings on the wire."""
    schema = _tidy(model.model_json_schema())
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", None)
        if isinstance(prop.get("type"), list):  # a query value is never null
            prop["type"] = next(kind for kind in prop["type"] if kind != "null")
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        if description:
            parameter["description"] = description
        parameter["schema"] = prop
        parameters.append(parameter)
    return parameters


# --------------------------------------------------------------------------- paths


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _problems(*codes: str) -> dict[str, Any]:
    """One response per status, listing exactly the problem codes this route can answer."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(PROBLEM_CODES[code][0], []).append(code)
    responses: dict[str, Any] = {}
    for status, group in sorted(by_status.items()):
        response: dict[str, Any] = {
            "description": "; ".join(f"`{code}`: {PROBLEM_WHEN[code]}" for code in group),
            "content": {
                PROBLEM_JSON: {
                    "schema": {
                        "allOf": [_ref("schemas", "Problem")],
                        "properties": {"code": {"enum": group}},
                    }
                }
            },
        }
        if status == 429:
            response["headers"] = {"Retry-After": _ref("headers", "RetryAfter")}
        responses[str(status)] = response
    return responses


def _json(schema_name: str, description: str, *, replayed: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": _ref("schemas", schema_name)}},
    }
    if replayed:
        response["headers"] = {"Idempotency-Replayed": _ref("headers", "IdempotencyReplayed")}
    return response


def _path_parameter(name: str, pattern: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": pattern},
    }


@dataclass(frozen=True)
class _Operation:
    """One route as the document shows it; bodies and queries come from their models."""

    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    answers: dict[str, Any]
    problems: tuple[str, ...] = ()
    parameters: tuple[dict[str, Any], ...] = ()
    query: type[BaseModel] | None = None
    body: dict[str, Any] | None = None
    description: str | None = None
    unsigned: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def render(self) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "operationId": self.operation_id,
            "tags": [self.tag],
            "summary": self.summary,
        }
        if self.description:
            operation["description"] = self.description
        parameters = list(self.parameters)
        if self.query is not None:
            parameters += _query_parameters(self.query)
        if parameters:
            operation["parameters"] = parameters
        if self.body is not None:
            operation["requestBody"] = self.body
        if self.unsigned:
            operation["security"] = []
        operation["responses"] = {**self.answers, **_problems(*self.problems)}
        return operation


def _body(schema_name: str, media_type: str = JSON) -> dict[str, Any]:
    return {"required": True, "content": {media_type: {"schema": _ref("schemas", schema_name)}}}


_HTML: Final = {"text/html": {"schema": {"type": "string"}}}


def _plain_path_parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_IDEMPOTENCY = _ref("parameters", "IdempotencyKey")
_PAYMENT_ID = _ref("parameters", "PaymentId")
_RECONCILIATION_ID = _ref("parameters", "ReconciliationId")
_DOSSIER_CODE = _path_parameter(
    "code",
    DOSSIER_CODE_PATTERN,
    "The dossier code, by the same grammar as `dossier.code` on create; a code outside it "
    "is `404 not_found`, since no payment can carry it.",
)

_OPERATIONS: Final = (
    _Operation(
        "post",
        "/v1/payments",
        "createPayment",
        "payments",
        "Create a payment order",
        {
            "201": _json("Payment", "Created; the order is placed at a bank."),
            "200": _json(
                "Payment",
                "The same Idempotency-Key and body were seen within 24 h: the payment "
                "created then.",
                replayed=True,
            ),
        },
        (*_SIGNED, *_WITH_BODY, *_IDEMPOTENT, "bank_unavailable"),
        parameters=(_IDEMPOTENCY,),
        body=_body("PaymentRequest"),
        description="The body is validated completely: a `validation_failed` answer lists "
        "every invalid field in `errors`. Beyond the schema: `amount` must equal the sum of "
        "`items[].amount` and `bank`, when given, must be configured (both "
        "`validation_failed`). Retry with the same Idempotency-Key after a timeout or "
        "`bank_unavailable`.",
    ),
    _Operation(
        "get",
        "/v1/payments",
        "listPayments",
        "payments",
        "This portal's payments for a dossier",
        {"200": _json("PaymentList", "The payments, oldest first (none: an empty list).")},
        (*_SIGNED, "validation_failed"),
        query=schemas.PaymentListQuery,
        description="Any other query parameter is `validation_failed`.",
    ),
    _Operation(
        "get",
        "/v1/payments/{id}",
        "getPayment",
        "payments",
        "One payment",
        {"200": _json("Payment", "The payment.")},
        (*_SIGNED, "not_found"),
        parameters=(_PAYMENT_ID,),
    ),
    _Operation(
        "post",
        "/v1/payments/{id}/cancel",
        "cancelPayment",
        "payments",
        "Cancel a pending payment",
        {"200": _json("Payment", "The payment, now `cancelled`.")},
        (*_SIGNED, *_WITH_BODY, "not_found", "invalid_state"),
        parameters=(_PAYMENT_ID,),
        body={
            "required": False,
            "content": {JSON: {"schema": {"type": "object", "maxProperties": 0}}},
        },
        description="Only a `pending` or `unknown` payment can be cancelled; otherwise "
        "`409 invalid_state`. No body, or `{}`.",
    ),
    _Operation(
        "post",
        "/v1/payments/{id}/refunds",
        "createRefund",
        "payments",
        "Refund (part of) a succeeded payment",
        {
            "201": _json("Refund", "The refund, `pending` until the bank answers."),
            "200": _json(
                "Refund",
                "The same Idempotency-Key and body were seen before: that refund.",
                replayed=True,
            ),
        },
        (
            *_SIGNED,
            *_WITH_BODY,
            *_IDEMPOTENT,
            "not_found",
            "invalid_state",
            "refund_not_supported",
            "bank_unavailable",
        ),
        parameters=(_PAYMENT_ID, _IDEMPOTENCY),
        body=_body("RefundRequest"),
        description="Refunds of a payment never add up to more than its amount "
        "(`validation_failed`); only a `succeeded` payment can be refunded "
        "(`invalid_state`).",
    ),
    _Operation(
        "get",
        "/v1/dossiers/{code}",
        "getDossier",
        "dossiers",
        "What this portal's payments did for a dossier",
        {"200": _json("DossierSummary", "The dossier.")},
        (*_SIGNED, "not_found"),
        parameters=(_DOSSIER_CODE,),
        description="`404 not_found` when this portal has no payment for the dossier.",
    ),
    _Operation(
        "get",
        "/v1/events",
        "listEvents",
        "events",
        "Events this portal missed",
        {"200": _json("EventPage", "Events after `after`, in creation order.")},
        (*_SIGNED, "validation_failed"),
        query=schemas.EventsQuery,
        description="`after` that is not an event of this portal, a `limit` outside 1–500 or "
        "not ASCII digits, and any other parameter are `validation_failed`.",
    ),
    _Operation(
        "post",
        "/v1/finance/reconciliations",
        "createReconciliation",
        "finance",
        "Reconcile a bank statement",
        {"201": _json("ReconciliationRun", "The run, finished.")},
        (*_SIGNED, *_WITH_BODY),
        body=_body("ReconciliationUpload", "multipart/form-data"),
        description="Finance users only. The statement may be up to the configured limit "
        "(default 256 MiB).",
    ),
    _Operation(
        "get",
        "/v1/finance/reconciliations/{id}",
        "getReconciliation",
        "finance",
        "A reconciliation run and its exceptions",
        {"200": _json("ReconciliationRunDetail", "The run.")},
        (*_SIGNED, "not_found"),
        parameters=(_RECONCILIATION_ID,),
    ),
    _Operation(
        "get",
        "/v1/finance/reconciliations/{id}/report.csv",
        "getReconciliationReport",
        "finance",
        "The run as CSV",
        {
            "200": {
                "description": "One line per statement line and per unmatched hub payment, "
                "with its discrepancy class.",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        },
        (*_SIGNED, "not_found"),
        parameters=(_RECONCILIATION_ID,),
    ),
    _Operation(
        "post",
        "/v1/finance/exceptions/{id}/resolve",
        "resolveException",
        "finance",
        "Record how an exception was settled",
        {"200": _json("ReconciliationException", "The exception, resolved.")},
        (*_SIGNED, *_WITH_BODY, "not_found"),
        parameters=({"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},),
        body=_body("ResolveRequest"),
    ),
    _Operation(
        "get",
        "/v1/openapi.json",
        "getOpenApi",
        "operations",
        "This document",
        {
            "200": {
                "description": "OpenAPI 3.1.",
                "content": {JSON: {"schema": {"type": "object"}}},
            }
        },
        unsigned=True,
    ),
    *(
        _Operation(
            method,
            path,
            operation_id,
            "finance",
            summary,
            {**answer, "401": {"description": "Not signed in: how to sign in.", "content": _HTML}},
            problems,
            parameters=parameters,
            unsigned=True,
            description="The finance web page, for people signed in by `payhub finance login` "
            "(a one-time link, then a session cookie); not for programs.",
        )
        for method, path, operation_id, summary, answer, problems, parameters in (
            (
                "get",
                "/finance",
                "financePage",
                "The finance page: runs, totals, exceptions",
                {"200": {"description": "The page.", "content": _HTML}},
                (),
                (),
            ),
            (
                "get",
                "/finance/login",
                "financeLogin",
                "Exchange a one-time login link for a session cookie",
                {"303": {"description": "Signed in; to /finance."}},
                (),
                (),
            ),
            (
                "get",
                "/finance/logout",
                "financeLogout",
                "Sign out",
                {"303": {"description": "Signed out; to /finance."}},
                (),
                (),
            ),
            (
                "get",
                "/finance/runs/{run}/report.csv",
                "financePageReport",
                "A run's CSV report, for a signed-in person",
                {"200": {"description": "The report.", "content": {"text/csv": {}}}},
                ("not_found",),
                (_plain_path_parameter("run"),),
            ),
            (
                "post",
                "/finance/exceptions/{exception}/resolve",
                "financePageResolve",
                "Resolve an exception from the page (a form post with its anti-forgery value)",
                {"303": {"description": "Back to the page, with a notice."}},
                (),
                (_plain_path_parameter("exception"),),
            ),
        )
    ),
    _Operation(
        "get",
        "/.well-known/jwks.json",
        "getJwks",
        "operations",
        "The hub's webhook-signing public keys",
        {"200": _json("JwkSet", "The JWK Set.")},
        unsigned=True,
    ),
    _Operation(
        "get",
        "/healthz",
        "healthz",
        "operations",
        "The process is alive",
        {"200": _json("Status", "Alive.")},
        unsigned=True,
    ),
    _Operation(
        "get",
        "/readyz",
        "readyz",
        "operations",
        "The database is reachable and its migrations are current",
        {"200": _json("Status", "Ready.")},
        ("not_ready",),
        unsigned=True,
    ),
    _Operation(
        "get",
        "/metrics",
        "metrics",
        "operations",
        "Prometheus metrics",
        {
            "200": {
                "description": "Prometheus text exposition format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
        unsigned=True,
    ),
)


def _paths(operations: Iterable[_Operation]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method] = operation.render()
    return paths


def _webhooks() -> dict[str, Any]:
    def header(name: str, description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "header",
            "required": True,
            "description": description,
            "schema": {"type": "string"},
        }

    return {
        "event": {
            "post": {
                "operationId": "receiveEvent",
                "tags": ["events"],
                "summary": "An event delivered to the portal's callback URL",
                "description": "Standard Webhooks. Answer 2xx within 15 s; anything else is "
                "retried at about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h "
                "(±10 %), then the event is dead until replayed. `410 Gone` disables the "
                "endpoint until an operator re-enables it. Missed events can also be "
                "fetched with `GET /v1/events`.",
                "security": [],
                "parameters": [
                    header("webhook-id", "The event id (`evt_…`), the same on every retry."),
                    header("webhook-timestamp", "Unix seconds of this attempt."),
                    header(
                        "webhook-signature",
                        "Space-separated: `v1a,<base64 Ed25519>` over "
                        "`{webhook-id}.{webhook-timestamp}.{body}` with each current hub key "
                        "(see `/.well-known/jwks.json`), plus `v1,<base64 HMAC-SHA256>` when "
                        "the portal has a `whsec_` secret.",
                    ),
                ],
                "requestBody": _body("WebhookPayload"),
                "responses": {
                    "2XX": {"description": "Delivered."},
                    "410": {"description": "Disable this endpoint."},
                },
            }
        }
    }


def _components(banks: Collection[str] | None) -> dict[str, Any]:
    component_schemas = copy.deepcopy(_component_schemas())
    if banks is not None:
        bank = component_schemas["PaymentRequest"]["properties"]["bank"]
        for constraint in ("pattern", "minLength", "maxLength"):
            bank.pop(constraint, None)
        bank["enum"] = [*sorted(banks), None]
    return {
        "securitySchemes": {
            "Signature": {
                "type": "apiKey",
                "in": "header",
                "name": "Signature",
                "description": _SECURITY_DESCRIPTION,
            },
            "SignatureInput": {
                "type": "apiKey",
                "in": "header",
                "name": "Signature-Input",
                "description": "The `Signature-Input` half of the RFC 9421 signature; see "
                "`Signature`.",
            },
        },
        "parameters": {
            "IdempotencyKey": {
                "name": "Idempotency-Key",
                "in": "header",
                "required": True,
                "description": "1–255 visible ASCII characters; the same key with the same "
                "body within 24 h replays the first answer, with a different body is "
                "`409 idempotency_conflict`. Covered by the signature.",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 255,
                    "pattern": "^[!-~]{1,255}$",
                },
            },
            "PaymentId": _path_parameter("id", "^pay_", "A payment id."),
            "ReconciliationId": _path_parameter("id", "^rec_", "A reconciliation run id."),
        },
        "headers": {
            "IdempotencyReplayed": {
                "required": True,
                "description": "`true`: this answer replays an earlier request's.",
                "schema": {"type": "string", "const": "true"},
            },
            "RetryAfter": {
                "required": True,
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "integer", "minimum": 0},
            },
        },
        "schemas": component_schemas,
    }


def openapi_document(public_url: str, *, banks: Collection[str] | None = None) -> dict[str, Any]:
    """The portal-facing API as an OpenAPI 3.1 document, served from ``public_url``.

    ``banks``, when given, lists the configured bank codes as the enum of
    ``PaymentRequest.bank``; without it the field is documented as free text.
    """
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "PayHub",
            "version": __version__,
            "summary": "Online-fee payments for public-service portals.",
            "description": "Portals create payment orders for dossiers and learn the outcome "
            "from signed webhooks or `GET /v1/events`; finance users reconcile bank "
            "statements. All amounts are whole VND (JSON integers: `1.0` is refused); all "
            "timestamps are RFC 3339 with the +07:00 offset. Every error is an RFC 9457 "
            "problem (`application/problem+json`) whose `code` says what happened.",
        },
        "servers": [{"url": public_url.rstrip("/") or "/"}],
        "security": [{"Signature": [], "SignatureInput": []}],
        "tags": [
            {"name": "payments", "description": "Payment orders and refunds (portals)."},
            {"name": "dossiers", "description": "Payments per dossier (portals)."},
            {"name": "events", "description": "State changes sent to portals."},
            {"name": "finance", "description": "Reconciliation (finance users)."},
            {"name": "operations", "description": "Unsigned: discovery and probes."},
        ],
        "paths": copy.deepcopy(_paths(_OPERATIONS)),
        "webhooks": _webhooks(),
        "components": _components(banks),
    }
