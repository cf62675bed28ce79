"""Routing: which bank takes a payment, by the operator's rules and the banks' health.

``config`` holds the operator's decisions (``[routing]`` in ``payhub.toml``), ``rules``
applies them to one payment, ``breaker`` keeps each bank's health, and ``router`` puts
the three together for the payment service.
"""

from payhub.routing.breaker import BreakerState, CircuitBreaker
from payhub.routing.config import (
    AgencyPattern,
    BankScope,
    BreakerPolicy,
    PreferenceRule,
    RoutingSettings,
)
from payhub.routing.router import NoBankAvailable, Route, Router
from payhub.routing.rules import RouteRequest

__all__ = [
    "AgencyPattern",
    "BankScope",
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
    "NoBankAvailable",
    "PreferenceRule",
    "Route",
    "RouteRequest",
    "Router",
    "RoutingSettings",
]
