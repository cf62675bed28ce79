"""Operations routes: health, readiness, metrics, the OpenAPI document and the JWKS."""

from __future__ import annotations

import json
from functools import lru_cache

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from payhub import keys
from payhub.api.openapi import openapi_document
from payhub.api.problems import json_response
from payhub.errors import ProblemError
from payhub.notify.signing import jwks as hub_jwks
from payhub.store.migrate import is_current

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    try:  # reading the schema revision also proves the database answers
        current = await is_current(request.app[keys.ENGINE])
    except Exception as exc:
        raise ProblemError("not_ready", "the database is not reachable") from exc
    if not current:
        raise ProblemError("not_ready", "database migrations are not current: payhub db upgrade")
    return json_response({"status": "ready"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    registry = request.app[keys.METRICS].registry
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


@routes.get("/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI document of exactly the routes this hub serves."""
    served = frozenset(
        route.resource.canonical
        for route in request.app.router.routes()
        if route.resource is not None
    )
    connectors = request.app[keys.CONNECTORS]
    banks = tuple(sorted(connectors))
    return web.Response(
        body=_served_document(request.app[keys.SETTINGS].current.public_url, banks, served),
        content_type="application/json",
    )


@lru_cache(maxsize=8)
def _served_document(public_url: str, banks: tuple[str, ...], served: frozenset[str]) -> bytes:
    document = openapi_document(public_url, banks=banks)
    document["paths"] = {path: ops for path, ops in document["paths"].items() if path in served}
    return json.dumps(document, ensure_ascii=False).encode()


@routes.get("/.well-known/jwks.json")
async def jwks(request: web.Request) -> web.Response:
    """The hub's Ed25519 public keys (RFC 7517 / RFC 8037) for webhook verification.

    Every key that signs ``v1a`` now: the current one and, during a rotation's overlap,
    the one before it.
    """
    settings = request.app[keys.SETTINGS].current
    return json_response(hub_jwks(settings.hub_keys, request.app[keys.CLOCK]()))
