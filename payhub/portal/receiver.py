"""A ready aiohttp endpoint for PayHub's webhooks: verify, drop duplicates, handle.

::

    async def on_event(webhook: Webhook) -> None:
        if webhook.type == "payment.succeeded":
            await mark_paid(webhook.data["dossier"]["code"])

    receiver = WebhookReceiver(on_event, jwks_url="https://payhub.example/.well-known/jwks.json")
    receiver.mount(app, "/payhub/events")

Answers: ``204`` once the handler returned (or for a duplicate ``webhook-id``, whose
handler is not called again); ``400`` for a request that does not verify; ``500`` when
the handler raised, so the hub tries again later. The JWKS is fetched at the first
webhook and fetched again (at most once a minute) when no key verifies, which is how a
hub key rotation reaches the portal without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from payhub.portal.webhooks import (
    DEFAULT_TOLERANCE,
    SeenWebhooks,
    Webhook,
    WebhookVerificationError,
    WebhookVerifier,
    keys_from_jwks,
)

JWKS_REFRESH = 60.0
Handler = Callable[[Webhook], Awaitable[None]]

log = logging.getLogger(__name__)


class SeenStore(Protocol):
    def seen(self, webhook_id: str) -> bool: ...

    def remember(self, webhook_id: str) -> None: ...


class WebhookReceiver:
    """Receives, verifies and deduplicates webhooks, and hands each new one to ``handler``."""

    def __init__(
        self,
        handler: Handler,
        *,
        jwks: Mapping[str, Any] | None = None,
        jwks_url: str | None = None,
        whsec: str | None = None,
        tolerance: int = DEFAULT_TOLERANCE,
        seen: SeenStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if jwks is None and jwks_url is None and whsec is None:
            raise ValueError("give jwks, jwks_url or whsec")
        self.handler = handler
        self.jwks_url = jwks_url
        self.whsec = whsec
        self.tolerance = tolerance
        self.clock = clock
        self.seen = seen if seen is not None else SeenWebhooks(clock=clock)
        self._jwks: Mapping[str, Any] | None = jwks
        self._fetched_at = float("-inf")
        self._in_progress: set[str] = set()
        self._lock = asyncio.Lock()
        self.handled = 0
        self.duplicates = 0
        self.rejected = 0

    def mount(self, app: web.Application, path: str) -> None:
        app.router.add_post(path, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            webhook = await self._verify(request.headers, body)
        except WebhookVerificationError as exc:
            self.rejected += 1
            log.warning("payhub webhook refused: %s", exc)
            return web.json_response({"error": str(exc)}, status=400)
        if self.seen.seen(webhook.id):
            self.duplicates += 1
            return web.Response(status=204)
        if webhook.id in self._in_progress:  # the same event, still being handled
            self.duplicates += 1
            return web.Response(status=409)
        self._in_progress.add(webhook.id)
        try:
            await self.handler(webhook)
        except Exception:
            log.exception("payhub webhook handler failed; the hub will send it again")
            return web.Response(status=500)
        finally:
            self._in_progress.discard(webhook.id)
        self.seen.remember(webhook.id)
        self.handled += 1
        return web.Response(status=204)

    async def _verify(self, headers: Mapping[str, str], body: bytes) -> Webhook:
        try:
            return (await self._verifier(refresh=False)).verify(headers, body)
        except WebhookVerificationError as exc:
            if self.jwks_url is None or "v1a" not in str(exc):
                raise
            if self.clock() - self._fetched_at < JWKS_REFRESH:
                raise
        return (await self._verifier(refresh=True)).verify(headers, body)

    async def _verifier(self, *, refresh: bool) -> WebhookVerifier:
        if self.jwks_url is not None and (self._jwks is None or refresh):
            async with self._lock:
                self._jwks = await fetch_jwks(self.jwks_url)
                self._fetched_at = self.clock()
        keys = keys_from_jwks(self._jwks) if self._jwks is not None else []
        return WebhookVerifier(
            public_keys=keys, whsec=self.whsec, tolerance=self.tolerance, clock=self.clock
        )


async def fetch_jwks(url: str) -> Mapping[str, Any]:
    """The hub's JWK Set (``GET /.well-known/jwks.json``, no signature needed)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(url) as response:
            response.raise_for_status()
            document: Mapping[str, Any] = await response.json()
            return document
