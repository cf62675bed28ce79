"""One webhook POST: signed, bounded by the timeout, never following redirects.

A redirect is an answer that is not 2xx, so it is a failed attempt (CONTRACT §4); its
``Location`` is kept so that ``payhub events send-test`` can tell the portal team where
their receiver sends the hub.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from payhub.domain.clock import rfc3339
from payhub.notify.signing import webhook_signature
from payhub.settings import HubKey

DELIVERY_TIMEOUT = 15.0
USER_AGENT = "PayHub-Webhooks/1"


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    latency_ms: int
    error: str | None
    location: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def webhook_body(event_type: str, created_at: datetime, payload: str) -> bytes:
    """The body of CONTRACT §4; ``payload`` is the stored JSON of the object, kept as is."""
    timestamp = rfc3339(created_at)
    return f'{{"type":"{event_type}","timestamp":"{timestamp}","data":{payload}}}'.encode()


async def post_webhook(
    session: aiohttp.ClientSession,
    url: str,
    *,
    webhook_id: str,
    sent_at: datetime,
    body: bytes,
    keys: list[HubKey],
    whsec: str | None,
    within: float = DELIVERY_TIMEOUT,
) -> Answer:
    timestamp = int(sent_at.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhook_signature(keys, whsec, webhook_id, timestamp, body),
    }
    started = time.perf_counter()

    def elapsed() -> int:
        return round((time.perf_counter() - started) * 1000)

    try:
        async with asyncio.timeout(within):
            async with session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                return Answer(response.status, elapsed(), None, response.headers.get("Location"))
    except TimeoutError:
        return Answer(None, elapsed(), f"no answer within {within:g} s")
    except aiohttp.ClientError as exc:
        return Answer(None, elapsed(), f"{type(exc).__name__}: {exc}"[:255])
