"""Which bank takes an order: the portal's choice, else the configured order, by health.

A bank that failed ``FAILURE_THRESHOLD`` times in a row is skipped for ``OPEN_SECONDS``
(a circuit breaker), then tried again; amount limits come from each connector.
"""

from __future__ import annotations

from dataclasses import dataclass

from payhub.connectors.port import BankConnector
from payhub.domain.clock import Clock

FAILURE_THRESHOLD = 5
OPEN_SECONDS = 30.0


@dataclass
class _Health:
    failures: int = 0
    open_until: float = 0.0


class Router:
    def __init__(
        self, connectors: dict[str, BankConnector], default_bank: str | None, clock: Clock
    ) -> None:
        self.connectors = connectors
        self.clock = clock
        order = list(connectors)
        if default_bank is not None:
            order.remove(default_bank)
            order.insert(0, default_bank)
        self.order = order
        self._health = {bank: _Health() for bank in connectors}

    def candidates(self, amount: int, chosen: str | None) -> list[str]:
        """Banks to try in turn; the portal's choice is never swapped for another bank."""
        if chosen is not None:
            connector = self.connectors[chosen]
            return [chosen] if connector.min_amount <= amount <= connector.max_amount else []
        fitting = [
            bank
            for bank in self.order
            if self.connectors[bank].min_amount <= amount <= self.connectors[bank].max_amount
        ]
        now = self.clock().timestamp()
        healthy = [bank for bank in fitting if self._health[bank].open_until <= now]
        return healthy or fitting

    def record_failure(self, bank: str) -> None:
        health = self._health[bank]
        health.failures += 1
        if health.failures >= FAILURE_THRESHOLD:
            health.open_until = self.clock().timestamp() + OPEN_SECONDS

    def record_success(self, bank: str) -> None:
        self._health[bank] = _Health()
