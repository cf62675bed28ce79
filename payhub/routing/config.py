"""What the operator decides about routing, as frozen values (read from ``[routing]``).

The values here are already checked by ``payhub.settings``; the router only reads them.
Everything has a default that keeps routing as it was before the section existed: the
default bank first, then the banks in the order of the file, each within its connector's
amount limits, and a bank skipped after five failures in a row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AgencyPattern:
    """An agency code, or a code and everything under it (``H29.*`` is H29, H29.17, …).

    Agency codes are dotted by administrative level (province ``H29``, district
    ``H29.17``), so a prefix ends at a dot: ``H29.*`` never matches ``H290``.
    """

    code: str
    below: bool = False

    @classmethod
    def parse(cls, text: str) -> AgencyPattern:
        if text.endswith(".*"):
            return cls(text[:-2], below=True)
        return cls(text)

    def matches(self, agency_code: str) -> bool:
        if agency_code == self.code:
            return True
        return self.below and agency_code.startswith(self.code + ".")

    def __str__(self) -> str:
        return f"{self.code}.*" if self.below else self.code


@dataclass(frozen=True)
class BankScope:
    """What one bank may be given when the portal names no bank, beyond its connector's limits.

    ``kinds``: every item of the payment must be of one of these kinds (a payment is one
    order at one bank, so a bank that must not collect taxes takes no bill with a tax
    line). ``agencies``: the dossier's agency must match one of these. ``None`` means no
    restriction.
    """

    min_amount: int | None = None
    max_amount: int | None = None
    kinds: frozenset[str] | None = None
    agencies: tuple[AgencyPattern, ...] | None = None


@dataclass(frozen=True)
class PreferenceRule:
    """When a payment matches, its ``prefer`` banks go first, in that order.

    A rule matches when every criterion it has holds; the first matching rule wins.
    Banks it does not name stay eligible after them, for failover.
    """

    prefer: tuple[str, ...]
    kinds: frozenset[str] | None = None
    agencies: tuple[AgencyPattern, ...] | None = None
    min_amount: int | None = None
    max_amount: int | None = None


@dataclass(frozen=True)
class BreakerPolicy:
    """When a bank's circuit breaker opens, and for how long.

    It opens after ``failure_threshold`` failures in a row, or when at least
    ``min_calls`` calls in the last ``window_seconds`` failed at ``failure_rate_percent``
    or more (0 turns the rate off). After ``open_seconds`` it lets one trial call through.
    """

    failure_threshold: int = 5
    failure_rate_percent: int = 50
    min_calls: int = 10
    window_seconds: int = 60
    open_seconds: int = 30


@dataclass(frozen=True)
class RoutingSettings:
    """The ``[routing]`` section; empty means the behaviour described in the module."""

    order: tuple[str, ...] = ()
    """Preference when the portal names no bank; banks not named follow in file order."""
    banks: Mapping[str, BankScope] = field(default_factory=dict)
    rules: tuple[PreferenceRule, ...] = ()
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
