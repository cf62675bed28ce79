"""Which banks take an order, in what order, and what their calls teach about their health.

The portal's bank, when it names one, is the only candidate: it is never swapped for
another, only checked against its connector's limits and its breaker. Otherwise every
configured bank is considered in preference order (a matching rule first, then
``[routing] order``), and kept when the amount fits its connector and its configured
scope and its breaker lets a call through. The service tries the candidates in turn and
reports each outcome back, which is what moves the breakers.

Each decision is one ``routing_decision`` log line naming the candidates and why every
other bank was left out (``limit``, ``rule``, ``breaker_open``); it carries the amount,
the item kinds and the agency code, never anything about the payer. The line is at info
level, except when the portal named its bank and that bank takes the payment (debug:
routing decided nothing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

from payhub.connectors.port import BankConnector
from payhub.domain.clock import Clock
from payhub.errors import ProblemError
from payhub.routing.breaker import BreakerState, CircuitBreaker
from payhub.routing.config import BankScope, RoutingSettings
from payhub.routing.rules import (
    RouteRequest,
    base_order,
    preferred_order,
    scope_excludes,
    within,
)

log = structlog.get_logger(__name__)

UNAVAILABLE_DETAIL = (
    "no configured bank could accept the order now; retry with the same Idempotency-Key"
)


class NoBankAvailable(ProblemError):
    """Every bank that may take the payment has its breaker open: answer 503 at once.

    Trying banks known to be down would only make the portal wait for the same answer.
    """

    def __init__(self, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(
            "bank_unavailable", UNAVAILABLE_DETAIL, headers={"Retry-After": str(seconds)}
        )


@dataclass(frozen=True)
class Route:
    """One routing decision: the banks to try in turn, and why the others are left out."""

    banks: tuple[str, ...]
    excluded: Mapping[str, str] = field(default_factory=dict)
    """Bank → ``limit``, ``rule`` or ``breaker_open``."""
    reason: str = "order"
    """What set the order: ``portal`` (its choice), ``rule[i]``, or ``order``."""
    retry_after: float = 0.0
    """When every bank left out was left out by its breaker: seconds until one reopens."""

    @property
    def unavailable(self) -> bool:
        """No bank to try, yet some bank would take the payment once healthy again."""
        return not self.banks and "breaker_open" in self.excluded.values()


class Router:
    """Routing for one hub process: the operator's rules plus a breaker per bank."""

    def __init__(
        self,
        connectors: Mapping[str, BankConnector],
        default_bank: str | None,
        clock: Clock,
        routing: RoutingSettings | None = None,
    ) -> None:
        self.connectors = connectors
        self.clock = clock
        self.settings = routing or RoutingSettings()
        self.order = base_order(list(connectors), default_bank, self.settings.order)
        self.breakers = {bank: CircuitBreaker(self.settings.breaker, clock) for bank in connectors}

    def limits(self, bank: str) -> tuple[int, int]:
        """The amounts a bank may be sent at all: its connector's limits."""
        connector = self.connectors[bank]
        return connector.min_amount, connector.max_amount

    def route(self, request: RouteRequest, chosen: str | None = None) -> Route:
        """Decide, take a half-open bank's one trial if it is listed, and log why."""
        excluded: dict[str, str] = {}
        if chosen is not None:
            considered, reason = [chosen], "portal"
        else:
            considered, rule = preferred_order(self.order, self.settings.rules, request)
            reason = "order" if rule is None else f"rule[{rule}]"
        eligible = []
        for bank in considered:
            why = self._excludes(bank, request, scoped=chosen is None)
            if why is None:
                eligible.append(bank)
            else:
                excluded[bank] = why
        banks = []
        for bank in eligible:
            if self.breakers[bank].acquire():
                banks.append(bank)
            else:
                excluded[bank] = "breaker_open"
        retry_after = 0.0
        if not banks and eligible:
            retry_after = min(self.breakers[bank].retry_after for bank in eligible)
        decision = Route(tuple(banks), excluded, reason, retry_after)
        # A portal that names its bank decided itself: when that bank takes the payment
        # there is nothing to explain, and an info line for it on every create cost about
        # 6 % of a create's CPU (py-spy). Every decision routing really made stays at info.
        emit = log.debug if chosen is not None and banks == [chosen] else log.info
        emit(
            "routing_decision",
            amount=request.amount,
            kinds=sorted(request.kinds) if request.kinds is not None else None,
            agency=request.agency_code,
            chosen=chosen,
            candidates=list(decision.banks),
            excluded=dict(excluded),
            reason=reason,
        )
        return decision

    def candidates(self, request: RouteRequest | int, chosen: str | None = None) -> list[str]:
        """The banks to try in turn; empty when none may take it (amount, rules).

        Raises ``NoBankAvailable`` (503) when banks may take it but all are unhealthy. A
        bare amount is accepted for callers that know nothing else of the payment.
        """
        if isinstance(request, int):
            request = RouteRequest(request)
        decision = self.route(request, chosen)
        if decision.unavailable:
            raise NoBankAvailable(decision.retry_after)
        return list(decision.banks)

    def record_success(self, bank: str) -> None:
        """A call to the bank went through (the order was placed)."""
        self._record(bank, failed=False)

    def record_failure(self, bank: str) -> None:
        """A call to the bank failed for the bank's reasons (5xx, timeout, refused)."""
        self._record(bank, failed=True)

    def state(self, bank: str) -> BreakerState:
        return self.breakers[bank].state

    def _excludes(self, bank: str, request: RouteRequest, *, scoped: bool) -> str | None:
        if bank not in self.connectors:
            return "rule"
        if not within(request.amount, *self.limits(bank)):
            return "limit"
        if not scoped:
            return None
        return scope_excludes(self.settings.banks.get(bank, BankScope()), request)

    def _record(self, bank: str, *, failed: bool) -> None:
        breaker = self.breakers.get(bank)
        if breaker is None:
            return
        before = breaker.state
        if failed:
            breaker.record_failure()
        else:
            breaker.record_success()
        after = breaker.state
        if after is not before:
            log.warning("bank_breaker", bank=bank, previous=before.value, state=after.value)
