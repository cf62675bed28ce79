"""What every simulated bank shares: its dice, its waits, its background work, its API faults
and the delivery of its confirmations to the hub (lost, duplicated, reordered, forged, resent).

A bank's simulator subclasses ``SimulatedBank`` and keeps only its protocol: how an order
is found from what a payer holds, what a payer's outcome means in its codes, how a
confirmation is signed and what answer ends its resends, and its statement's format.
"""

from __future__ import annotations

import abc
import asyncio
import random
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, ClassVar, Generic, TypeVar

import aiohttp
from aiohttp import web
from yarl import URL

from banks.simulation.faults import Faults
from payhub.domain.clock import Clock

OrderT = TypeVar("OrderT")

LATE = "late"
ABANDON = "abandon"
"""Outcomes every bank plays the same way: pay after a delay, or open the page and leave."""


class OrderRejected(Exception):
    """The bank refuses what the payer or merchant asked; ``code`` is the bank's own."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class UnknownReference(LookupError):
    """No order at this bank matches what the payer holds."""


@dataclass(frozen=True)
class Outgoing:
    """One confirmation request exactly as the bank puts it on the wire."""

    method: str
    url: str
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PendingConfirmation:
    """A confirmation the bank owes the hub; ``build(forge, tamper)`` makes its request.

    ``forge`` signs with a wrong secret; ``tamper`` raises the amount after signing. The
    bank decides how, since only it knows its signature.
    """

    reference: str
    build: Callable[[bool, bool], Outgoing]


@dataclass(frozen=True)
class StatementFile:
    text: str
    content_type: str
    filename: str


class SimulatedBank(abc.ABC, Generic[OrderT]):
    """The bank's memory and machinery; subclasses add their protocol."""

    outcomes: ClassVar[tuple[str, ...]] = ()
    """Payer outcomes of ``POST /_sim/pay`` besides ``late`` and ``abandon``."""
    faults_class: ClassVar[type[Faults]] = Faults

    def __init__(
        self,
        *,
        notify_url: str,
        clock: Clock,
        seed: Any = None,
        faults: Faults | None = None,
        fee_basis_points: int = 0,
    ) -> None:
        self.notify_url = notify_url
        self.clock = clock
        self.rng = random.Random(seed)
        self.faults = faults or self.faults_class()
        self.fee_basis_points = fee_basis_points
        self.confirmations: list[dict[str, Any]] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closing = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None

    # --- protocol hooks ----------------------------------------------------------------

    @abc.abstractmethod
    def resolve(self, reference: str, amount: int | None) -> OrderT:
        """The order behind a bank reference, a payment URL or a QR payload.

        ``amount`` is what the payer says they pay, when they say it (a bank that learns
        of orders only from the payer may need it). Raises ``UnknownReference`` or
        ``OrderRejected``.
        """

    @abc.abstractmethod
    def order_reference(self, order: OrderT) -> str:
        """The merchant's reference of ``order`` (vnp_TxnRef, orderId)."""

    @abc.abstractmethod
    async def play(
        self, order: OrderT, outcome: str, amount: int | None, faults: Faults
    ) -> dict[str, Any]:
        """The payer acts on ``order``, then the bank confirms; a report of what happened."""

    @abc.abstractmethod
    def read_answer(self, status: int, body: bytes) -> dict[str, Any]:
        """What the hub answered to a confirmation, as the bank reads it."""

    @abc.abstractmethod
    def accepted(self, answer: Mapping[str, Any]) -> bool:
        """Whether that answer ends the bank's resends."""

    @abc.abstractmethod
    def statement(self, day: date) -> StatementFile:
        """The business day's statement, from the payments that really happened."""

    # --- dice, waits and background work -------------------------------------------------

    def roll(self, fraction: float) -> bool:
        return fraction > 0 and self.rng.random() < fraction

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` (on a ``ManualClock`` when given one); ``True`` if shut down first."""
        if self.closing.is_set():
            return True
        sleep = getattr(self.clock, "sleep", None)
        waits: Coroutine[Any, Any, Any] = sleep(seconds) if sleep else asyncio.sleep(seconds)
        timer = asyncio.ensure_future(waits)
        closed = asyncio.ensure_future(self.closing.wait())
        try:
            await asyncio.wait({timer, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            closed.cancel()
        return self.closing.is_set()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run in the background, owned by the app so that cleanup can cancel it."""
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        self.closing.set()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("the simulator's HTTP client exists only while the app runs")
        return self._http

    def fee(self, amount: int) -> int:
        return amount * self.fee_basis_points // 10_000

    async def pay_later(
        self, order: OrderT, delay: float, amount: int | None, faults: Faults
    ) -> None:
        """A payer who pays successfully after ``delay`` seconds."""
        if await self.pause(delay):
            return
        try:
            await self.play(order, "success", amount, faults)
        except OrderRejected:
            return

    # --- bank API faults -----------------------------------------------------------------

    async def api_fault(self, request: web.Request) -> web.StreamResponse | None:
        """Latency, dropped connections, 503s and hangs for one API request; ``None``: go on."""
        faults = self.faults
        low, high = faults.latency_ms
        if high and await self.pause(self.rng.randint(low, high) / 1000):
            return web.Response(status=503)
        if self.roll(faults.reset_rate) and request.transport is not None:
            request.transport.abort()
            return web.Response(status=503)
        if self.roll(faults.error_rate):
            return web.json_response({"error": "service unavailable"}, status=503)
        if self.roll(faults.timeout_rate):
            await self.pause(faults.hang_seconds)
            return web.Response(status=503)
        return None

    async def answer_lost(self) -> bool:
        """After the request was carried out: whether its answer is lost on the way back.

        The bank holds the order, the merchant hears nothing (it hangs ``hang_seconds``,
        then gets a 503 it has long stopped waiting for): the case only a status query
        can settle, unlike ``timeout_rate``, which hangs before the request is read.
        """
        if self.roll(self.faults.answer_lost_rate):
            await self.pause(self.faults.hang_seconds)
            return True
        return False

    # --- confirmations -------------------------------------------------------------------

    async def deliver(
        self, pending: list[PendingConfirmation], faults: Faults
    ) -> list[dict[str, Any]]:
        """Send one payer's confirmations in order (newest first when reordered)."""
        ordered = list(reversed(pending)) if faults.reorder_confirmations else pending
        return [await self.deliver_one(item, faults) for item in ordered]

    async def deliver_one(self, item: PendingConfirmation, faults: Faults) -> dict[str, Any]:
        """Send one confirmation (and its copies) with the faults rolled; resend if refused."""
        entry: dict[str, Any] = {"reference": item.reference, "attempt": 0}
        if self.roll(faults.lose_confirmation):
            entry |= {"lost": True, "answers": []}
            self.confirmations.append(entry)
            return entry
        forged = self.roll(faults.bad_signature)
        tampered = self.roll(faults.tamper_amount)
        outgoing = item.build(forged, tampered)
        copies = 1 + faults.duplicate_confirmation
        if faults.concurrent_duplicates:
            sends = (self.send(outgoing, faults) for _ in range(copies))
            answers = list(await asyncio.gather(*sends))
        else:
            answers = [await self.send(outgoing, faults) for _ in range(copies)]
        done = any(self.accepted(answer) for answer in answers)
        retry = not done and faults.ipn_retries > 0
        entry |= {
            "lost": False,
            "bad_signature": forged,
            "tampered": tampered,
            "answers": answers,
            "retry_scheduled": retry,
        }
        self.confirmations.append(entry)
        if retry:
            self.spawn(self._resend(outgoing, item.reference, faults))
        return entry

    async def send(self, outgoing: Outgoing, faults: Faults) -> dict[str, Any]:
        """One server-to-server request; what the hub answered, or why it did not."""
        timeout = aiohttp.ClientTimeout(total=faults.ipn_timeout_seconds)
        try:
            async with self.http.request(
                outgoing.method,
                URL(outgoing.url, encoded=True),
                data=outgoing.body,
                headers=dict(outgoing.headers),
                timeout=timeout,
            ) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return {"error": type(exc).__name__}
        return self.read_answer(status, body)

    async def _resend(self, outgoing: Outgoing, reference: str, faults: Faults) -> None:
        """The bank's own schedule: resend until accepted or the retries run out."""
        for attempt, delay in enumerate(faults.retry_delays(), start=1):
            if await self.pause(delay):
                return
            answer = await self.send(outgoing, faults)
            self.confirmations.append(
                {"reference": reference, "attempt": attempt, "lost": False, "answers": [answer]}
            )
            if self.accepted(answer):
                return
