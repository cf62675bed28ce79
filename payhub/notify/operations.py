"""Operator commands on notifications: replay, re-enable an endpoint, list dead events,
and send a signed ``ping`` to check a portal's receiver before it goes live.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from payhub.domain.clock import Clock, rfc3339, system_clock
from payhub.domain.ids import new_id
from payhub.errors import ConfigError
from payhub.notify.sender import DELIVERY_TIMEOUT, post_webhook
from payhub.notify.signing import signing_keys
from payhub.operations import OPERATOR, operator_ledger
from payhub.settings import Settings
from payhub.store.outbox import LedgerOutbox, ReplayReport

MAX_REDIRECTS_SHOWN = 5


@asynccontextmanager
async def operator_outbox(settings: Settings) -> AsyncIterator[LedgerOutbox]:
    """The outbox of the configured database, written through a ledger of its own."""
    async with operator_ledger(settings) as ledger:
        yield LedgerOutbox(ledger)


async def replay(settings: Settings, event_ids: Sequence[str], *, dead: bool) -> ReplayReport:
    async with operator_outbox(settings) as outbox:
        return await outbox.replay(actor=OPERATOR, event_ids=event_ids, dead=dead)


async def enable(settings: Settings, portal_id: str) -> bool:
    if portal_id not in settings.portals:
        raise ConfigError(f"no portal {portal_id!r} in {settings.config_path}")
    async with operator_outbox(settings) as outbox:
        return await outbox.enable_endpoint(portal_id, actor=OPERATOR)


async def dead_events(settings: Settings) -> list[dict[str, Any]]:
    async with operator_outbox(settings) as outbox:
        return [
            {
                "id": row["id"],
                "portal": row["portal_id"],
                "type": row["type"],
                "created_at": rfc3339(row["created_at"]),
            }
            for row in await outbox.dead_events()
        ]


@dataclass(frozen=True)
class PingReport:
    portal: str
    url: str
    webhook_id: str
    status: int | None
    latency_ms: int
    in_time: bool
    redirects: list[str]
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def as_dict(self) -> dict[str, Any]:
        return {
            "portal": self.portal,
            "url": self.url,
            "webhook_id": self.webhook_id,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "in_time": self.in_time,
            "redirects": self.redirects,
            "error": self.error,
            "ok": self.ok,
        }


async def send_test(
    settings: Settings, portal_id: str, *, clock: Clock = system_clock
) -> PingReport:
    """One signed ``ping`` to the portal's callback: never retried, never stored.

    The hub does not follow redirects when it delivers (a ``3xx`` is a failure), so
    neither does this; the redirect chain is walked with plain ``GET``s, unsigned and
    without the body, only to tell the portal team where their URL leads.
    """
    portal = settings.portals.get(portal_id)
    if portal is None:
        raise ConfigError(f"no portal {portal_id!r} in {settings.config_path}")
    now = clock()
    webhook_id = new_id("evt")
    body = f'{{"type":"ping","timestamp":"{rfc3339(now)}","data":{{}}}}'.encode()
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        answer = await post_webhook(
            session,
            portal.callback_url,
            webhook_id=webhook_id,
            sent_at=now,
            body=body,
            keys=signing_keys(settings.hub_keys, now),
            whsec=portal.whsec,
        )
        redirects = await _redirect_chain(session, portal.callback_url, answer.location)
    in_time = answer.status_code is not None and time.perf_counter() - started < DELIVERY_TIMEOUT
    return PingReport(
        portal=portal_id,
        url=portal.callback_url,
        webhook_id=webhook_id,
        status=answer.status_code,
        latency_ms=answer.latency_ms,
        in_time=in_time,
        redirects=redirects,
        error=answer.error,
    )


async def _redirect_chain(
    session: aiohttp.ClientSession, url: str, location: str | None
) -> list[str]:
    from yarl import URL

    chain: list[str] = []
    current = URL(url)
    while location and len(chain) < MAX_REDIRECTS_SHOWN:
        current = current.join(URL(location))
        chain.append(str(current))
        try:
            async with session.get(
                current, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=5)
            ) as response:
                location = (
                    response.headers.get("Location") if 300 <= response.status < 400 else None
                )
        except (aiohttp.ClientError, TimeoutError):
            break
    return chain
