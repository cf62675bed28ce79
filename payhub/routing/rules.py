"""The operator's rules, applied to one payment: which banks may take it, in what order.

Pure functions of the request and the configuration; the router adds the banks' health.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from payhub.domain.requests import PaymentRequest
from payhub.routing.config import AgencyPattern, BankScope, PreferenceRule


@dataclass(frozen=True)
class RouteRequest:
    """What routing may know of a payment: no payer, nothing personal.

    ``kinds`` and ``agency_code`` are ``None`` when the caller does not say; a bank whose
    scope restricts them is then not chosen, since it cannot be shown to be allowed.
    """

    amount: int
    kinds: frozenset[str] | None = None
    agency_code: str | None = None

    @classmethod
    def for_payment(cls, request: PaymentRequest) -> RouteRequest:
        """What routing needs of a validated payment request, and nothing more."""
        return cls(
            amount=request.amount,
            kinds=frozenset(item.kind.value for item in request.items),
            agency_code=request.dossier.agency_code,
        )


def within(amount: int, low: int | None, high: int | None) -> bool:
    return (low is None or amount >= low) and (high is None or amount <= high)


def _agency_matches(patterns: Iterable[AgencyPattern], agency_code: str | None) -> bool:
    return agency_code is not None and any(p.matches(agency_code) for p in patterns)


def _kinds_allowed(allowed: frozenset[str], kinds: frozenset[str] | None) -> bool:
    return kinds is not None and kinds <= allowed


def scope_excludes(scope: BankScope, request: RouteRequest) -> str | None:
    """Why the operator's scope for a bank keeps it from this payment (``None``: it does not)."""
    if not within(request.amount, scope.min_amount, scope.max_amount):
        return "limit"
    if scope.kinds is not None and not _kinds_allowed(scope.kinds, request.kinds):
        return "rule"
    if scope.agencies is not None and not _agency_matches(scope.agencies, request.agency_code):
        return "rule"
    return None


def rule_matches(rule: PreferenceRule, request: RouteRequest) -> bool:
    if not within(request.amount, rule.min_amount, rule.max_amount):
        return False
    if rule.kinds is not None and not _kinds_allowed(rule.kinds, request.kinds):
        return False
    return rule.agencies is None or _agency_matches(rule.agencies, request.agency_code)


def preferred_order(
    order: Sequence[str], rules: Sequence[PreferenceRule], request: RouteRequest
) -> tuple[list[str], int | None]:
    """The banks in preference order for this payment, and the index of the rule that set it."""
    for index, rule in enumerate(rules):
        if rule_matches(rule, request):
            first = [bank for bank in rule.prefer if bank in order]
            return first + [bank for bank in order if bank not in first], index
    return list(order), None


def base_order(
    banks: Sequence[str], default_bank: str | None, configured: Sequence[str]
) -> list[str]:
    """The standing preference: the configured order, else the default bank first."""
    head = list(configured) if configured else ([default_bank] if default_bank else [])
    head = [bank for bank in head if bank in banks]
    return head + [bank for bank in banks if bank not in head]
