"""The delivery worker: outbox events to portals, until each is acknowledged or dead.

Each round claims the due events (see ``payhub.store.outbox`` for why a claim keeps an
event with one worker at a time, across hub processes), posts them concurrently, and
records every attempt in one write. A ``2xx`` delivers the event; anything else, or no
answer within 15 s, schedules the next try (``payhub.notify.schedule``) or, after the
last, makes the event dead, listed for ``payhub events replay``. ``410 Gone`` disables
the portal's endpoint until an operator re-enables it (``payhub events enable``).

Ordering, per portal: a round claims events in the order they became due and first
attempts are in creation order, but they are sent concurrently and a failed event is
retried on its own schedule while later ones go on. So a portal may receive events out
of order, and the same event more than once (same ``webhook-id``). A portal therefore
deduplicates by ``webhook-id`` (the SDK does), treats each event's ``data`` as the
object's state at that moment, and when order matters reads ``GET /v1/events``, which
lists its events in creation order. A stuck event never holds back the others.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta

import aiohttp
import structlog

from payhub.domain.clock import Clock
from payhub.notify.port import AttemptOutcome, DueEvent, Outbox
from payhub.notify.schedule import retry_delay
from payhub.notify.sender import DELIVERY_TIMEOUT, Answer, post_webhook, webhook_body
from payhub.notify.signing import signing_keys
from payhub.settings import HubKey, PortalSettings

LEASE = timedelta(seconds=60)
"""How long a claim lasts. A round's slowest event waits for a slot (``BATCH`` events,
``CONCURRENCY`` at a time: two 15 s timeouts at most) and is then recorded, well within
it, so an attempt in flight is never claimed by another worker; after a crash its event
is due again when the lease ends."""
BATCH = 128
CONCURRENCY = 64
IDLE_POLL = 0.05
_OUTCOME = {"delivered": "delivered", "pending": "retry", "dead": "dead"}
"""An attempt's outcome for the metrics, by the state it leaves its event in."""

log = structlog.get_logger(__name__)


class DeliveryWorker:
    """Delivers due outbox events; ``deliver_due`` is one round, ``run`` loops forever."""

    def __init__(
        self,
        outbox: Outbox,
        session: aiohttp.ClientSession,
        *,
        portals: Mapping[str, PortalSettings],
        hub_keys: Sequence[HubKey],
        clock: Clock,
        rng: random.Random | None = None,
        timeout: float = DELIVERY_TIMEOUT,
        batch: int = BATCH,
        on_attempt: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.session = session
        self.portals = portals
        self.hub_keys = tuple(hub_keys)
        self.clock = clock
        self.rng = rng or random.Random()
        self.timeout = timeout
        self.batch = batch
        self.on_attempt = on_attempt
        """Told each attempt's portal, outcome and seconds (the webhook metrics)."""
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self.delivered = 0
        self.failed = 0

    def use_principals(
        self, portals: Mapping[str, PortalSettings], hub_keys: Sequence[HubKey]
    ) -> None:
        """From the next attempt on: these portals' callbacks and secrets, these hub keys."""
        self.portals = portals
        self.hub_keys = tuple(hub_keys)

    async def deliver_due(self) -> int:
        """Claim what is due now, attempt each once, record the outcomes; how many."""
        now = self.clock()
        claimed = await self.outbox.claim_due(now, now + LEASE, self.batch)
        if not claimed:
            return 0
        outcomes = await asyncio.gather(*(self._attempt(event) for event in claimed))
        await self.outbox.finish(list(outcomes))
        return len(claimed)

    async def deliver_all_due(self) -> int:
        """Rounds until nothing is due (what tests on a fake clock call)."""
        total = 0
        while count := await self.deliver_due():
            total += count
        return total

    async def run(self) -> None:
        """Forever: a round, then another at once if it was full, else after a short wait."""
        while True:
            try:
                count = await self.deliver_due()
            except Exception:
                log.exception("delivery_round_failed")
                count = 0
            if count < self.batch:
                await asyncio.sleep(IDLE_POLL)

    async def _attempt(self, event: DueEvent) -> AttemptOutcome:
        started = self.clock()
        portal = self.portals.get(event.portal_id)
        if portal is None:
            answer = Answer(None, 0, f"portal {event.portal_id!r} is not configured")
        else:
            async with self._slots:
                answer = await post_webhook(
                    self.session,
                    portal.callback_url,
                    webhook_id=event.id,
                    sent_at=started,
                    body=webhook_body(event.type, event.created_at, event.payload),
                    keys=signing_keys(self.hub_keys, started),
                    whsec=portal.whsec,
                    within=self.timeout,
                )
        if answer.ok:
            self.delivered += 1
            state, next_at = "delivered", None
        else:
            self.failed += 1
            delay = retry_delay(event.attempt, self.rng)
            state, next_at = ("dead", None) if delay is None else ("pending", started + delay)
            log.info(
                "webhook_failed",
                event_id=event.id,
                portal=event.portal_id,
                attempt=event.attempt,
                status=answer.status_code,
                error=answer.error,
                state=state,
            )
        if self.on_attempt is not None:
            outcome = "gone" if answer.status_code == 410 else _OUTCOME[state]
            self.on_attempt(event.portal_id, outcome, answer.latency_ms / 1000)
        return AttemptOutcome(
            event=event,
            started_at=started,
            status_code=answer.status_code,
            latency_ms=answer.latency_ms,
            error=answer.error,
            state=state,
            next_attempt_at=next_at,
            gone=answer.status_code == 410,
        )
