"""Request middlewares: log context and problem answers, then signatures and authorisation.

``/v1/*`` requests are read (bounded), verified (RFC 9421, CONTRACT §1) and bound to
their principal before any handler runs; a handler finds the principal under
``PRINCIPAL`` and the verified body under ``BODY``. Nothing a client sends ends in an
unhandled exception: HTTP errors of the router become problems, anything unexpected is
logged with its traceback and answered ``500 internal_error`` without details.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from payhub import keys
from payhub.api.auth import Credential, PrincipalKind, SignedRequest, authenticate
from payhub.api.problems import problem_response
from payhub.domain.ids import new_id
from payhub.errors import ProblemError
from payhub.store.ledger import LedgerClosed
from payhub.store.nonces import DatabaseNonceStore, HeldNonce

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

JSON_LIMIT = 64 * 1024
STATEMENT_LIMIT = 256 * 1024 * 1024
PRINCIPAL = web.RequestKey("principal", Credential)
BODY = web.RequestKey("body", bytes)
HELD_NONCE = web.RequestKey("held_nonce", HeldNonce)
# Routes whose use case claims the request's nonce in its own unit of work (one durable
# round per create); every other request claims its nonce alone before its handler.
NONCE_IN_UNIT = frozenset({("POST", "/v1/payments")})
UNSIGNED_V1 = frozenset({"/v1/openapi.json"})
STREAMED_BODIES = frozenset({("POST", "/v1/finance/reconciliations")})
"""Large uploads: authenticated over the headers before one byte of the body is read."""
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

log = structlog.get_logger("payhub.http")

_HTTP_PROBLEMS = {
    400: "malformed_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind the log context, answer every error as a problem, count, time and log the request.

    The context is cleared and ``request_id`` (and ``payment_id`` for ``/{id}`` routes)
    bound first; ``signature_middleware`` and the handlers bind more (``portal``,
    ``finance_user``, ``bank`` …) in the same task, so the one ``request`` line logged
    here at the end carries all of it. Only the path is logged, never the query string
    (VNPay's return and IPN queries carry signatures and payer data).
    """
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID.match(given) else new_id("req")
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    if "id" in request.match_info:
        structlog.contextvars.bind_contextvars(payment_id=request.match_info["id"])
    path = request.path[:512]
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ProblemError as problem:
        response = problem_response(problem)
    except LedgerClosed:
        response = problem_response(
            ProblemError(
                "not_ready", "the hub is shutting down; retry", headers={"Retry-After": "1"}
            )
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_PROBLEMS.get(exc.status, "malformed_request")
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        response = problem_response(ProblemError(code, exc.reason or code, headers=allow))
    except Exception:
        log.exception("request_failed", method=request.method, path=path)
        response = problem_response(
            ProblemError("internal_error", f"the hub failed on this request (id {request_id})")
        )
    elapsed = time.perf_counter() - started
    response.headers["X-Request-Id"] = request_id
    metrics = request.app[keys.METRICS]
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    metrics.requests.labels(route, str(response.status)).inc()
    metrics.latency.labels(route).observe(elapsed)
    log.info(
        "request",
        method=request.method,
        path=path,
        route=route,
        status=response.status,
        duration_ms=round(elapsed * 1000, 3),
    )
    return response


@web.middleware
async def signature_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Verify every ``/v1/*`` request and decide whether its principal may use the route."""
    path = request.path
    if not path.startswith("/v1/") or path in UNSIGNED_V1:
        return await handler(request)
    finance_route = path.startswith("/v1/finance/")
    streamed = (request.method, path) in STREAMED_BODIES
    if streamed:  # the signature over the headers first; the handler streams the body
        if request.content_length is not None and request.content_length > STATEMENT_LIMIT:
            raise ProblemError("payload_too_large", f"the body is over {STATEMENT_LIMIT:,} bytes")
        body = b""
    else:
        body = await read_body(request, JSON_LIMIT)
    signed = SignedRequest.from_aiohttp(request, body)
    app = request.app
    credentials: dict[str, Credential] = app[keys.CREDENTIALS]
    store = app[keys.NONCES]
    held = (
        store.hold() if isinstance(store, DatabaseNonceStore) and _nonce_in_unit(request) else None
    )
    credential = await authenticate(
        signed, credentials, held or store, app[keys.CLOCK](), body_streamed=streamed
    )
    if held is None:
        return await _admit(request, credential, body, finance_route, handler)
    request[HELD_NONCE] = held
    try:
        return await _admit(request, credential, body, finance_route, handler)
    finally:
        # A request refused or failed before its use case claimed the nonce uses it up
        # alone, so a replay of it is still answered 401 and not with its first answer.
        if not await held.settle():
            raise ProblemError("signature_replayed", "This nonce was already used with this key.")


def _nonce_in_unit(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and (request.method, resource.canonical) in NONCE_IN_UNIT


async def _admit(
    request: web.Request,
    credential: Credential,
    body: bytes,
    finance_route: bool,
    handler: Handler,
) -> web.StreamResponse:
    _authorise(credential, finance_route)
    request.app[keys.RATE_LIMITER].check(f"{credential.kind.value}:{credential.principal}")
    structlog.contextvars.bind_contextvars(
        **{
            "portal"
            if credential.kind is PrincipalKind.PORTAL
            else "finance_user": credential.principal
        }
    )
    if "id" in request.match_info:
        structlog.contextvars.bind_contextvars(payment_id=request.match_info["id"])
    request[PRINCIPAL] = credential
    request[BODY] = body
    return await handler(request)


def _authorise(credential: Credential, finance_route: bool) -> None:
    if finance_route and credential.kind is not PrincipalKind.FINANCE:
        raise ProblemError("forbidden", "only finance users may use /v1/finance")
    if not finance_route and credential.kind is not PrincipalKind.PORTAL:
        raise ProblemError("forbidden", "finance users may only use /v1/finance")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes before buffering them."""
    if request.content_length is not None and request.content_length > limit:
        raise ProblemError("payload_too_large", f"the body is over {limit:,} bytes")
    if not request.body_exists:
        return b""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise ProblemError("payload_too_large", f"the body is over {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
