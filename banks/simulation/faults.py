"""Fault knobs: what can go wrong at a simulated bank, read from ``PUT /_sim/faults`` JSON.

Fractions are probabilities in [0, 1] (``true``/``false`` count as 1/0). Every knob is
validated on its own and a bad one is named, so a test or the demo learns at once why
its setting was refused. A bank adds knobs of its own by subclassing ``Faults`` with new
fields and extending ``READERS`` (MoMo's ``query_result_code``).

==========================  =======  =============================================================
knob                        default  effect
==========================  =======  =============================================================
``latency_ms``              0        bank-API delay: milliseconds, or ``[min, max]`` uniform
``error_rate``              0        fraction of bank-API requests answered HTTP 503
``timeout_rate``            0        fraction of bank-API requests that hang ``hang_seconds``
``hang_seconds``            30       how long a hung request hangs (at most 60; ends on shutdown)
``reset_rate``              0        fraction of bank-API connections dropped without answer
``answer_lost_rate``        0        fraction of bank-API requests carried out, whose answer then
                                     hangs ``hang_seconds`` and is lost (the order or refund exists)
``lose_confirmation``       0        fraction of confirmations never sent (nor retried)
``duplicate_confirmation``  0        extra copies of every confirmation
``concurrent_duplicates``   false    send a confirmation and its copies at the same time
``reorder_confirmations``   false    send one payer's confirmations newest first
``tamper_amount``           0        fraction of confirmations whose amount is raised after signing
``bad_signature``           0        fraction of confirmations signed with a wrong secret
``ipn_retries``             10       resends of a confirmation the hub did not accept
``ipn_retry_seconds``       300      wait before the first resend
``ipn_backoff``             1        factor applied to the wait after each resend (1: even spacing)
``ipn_timeout_seconds``     15       how long the bank waits for the hub's answer
``enforce_expiry``          false    payments after the order's deadline fail as expired
==========================  =======  =============================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar, Self

MAX_HANG_SECONDS = 60.0
MAX_COPIES = 100
KnobReader = Callable[[str, Any], Any]


def fraction(name: str, value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a fraction between 0 and 1")
    return float(value)


def count(limit: int) -> KnobReader:
    def read(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
            raise ValueError(f"{name} must be a whole number from 0 to {limit}")
        return value

    return read


def seconds(limit: float) -> KnobReader:
    def read(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number of seconds")
        if not 0 <= value <= limit:
            raise ValueError(f"{name} must be between 0 and {limit} seconds")
        return float(value)

    return read


def factor(low: float, high: float) -> KnobReader:
    def read(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number")
        if not low <= value <= high:
            raise ValueError(f"{name} must be between {low} and {high}")
        return float(value)

    return read


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def latency(name: str, value: Any) -> tuple[int, int]:
    read = count(60_000)
    if isinstance(value, list) and len(value) == 2:
        low, high = read(name, value[0]), read(name, value[1])
        if low > high:
            raise ValueError(f"{name} must be [min, max] with min <= max")
        return low, high
    fixed = read(name, value)
    return fixed, fixed


def one_of(choices: frozenset[int]) -> KnobReader:
    """An optional code from ``choices``; ``null`` switches the knob off."""

    def read(name: str, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
            raise ValueError(f"{name} must be null or one of {sorted(choices)}")
        return value

    return read


@dataclass(frozen=True)
class Faults:
    """The knobs in force; see the module docstring."""

    latency_ms: tuple[int, int] = (0, 0)
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    hang_seconds: float = 30.0
    reset_rate: float = 0.0
    answer_lost_rate: float = 0.0
    lose_confirmation: float = 0.0
    duplicate_confirmation: int = 0
    concurrent_duplicates: bool = False
    reorder_confirmations: bool = False
    tamper_amount: float = 0.0
    bad_signature: float = 0.0
    ipn_retries: int = 10
    ipn_retry_seconds: float = 300.0
    ipn_backoff: float = 1.0
    ipn_timeout_seconds: float = 15.0
    enforce_expiry: bool = False

    READERS: ClassVar[dict[str, KnobReader]] = {
        "latency_ms": latency,
        "error_rate": fraction,
        "timeout_rate": fraction,
        "hang_seconds": seconds(MAX_HANG_SECONDS),
        "reset_rate": fraction,
        "answer_lost_rate": fraction,
        "lose_confirmation": fraction,
        "duplicate_confirmation": count(MAX_COPIES),
        "concurrent_duplicates": flag,
        "reorder_confirmations": flag,
        "tamper_amount": fraction,
        "bad_signature": fraction,
        "ipn_retries": count(100),
        "ipn_retry_seconds": seconds(86_400),
        "ipn_backoff": factor(1, 10),
        "ipn_timeout_seconds": seconds(60),
        "enforce_expiry": flag,
    }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], base: Self | None = None) -> Self:
        """Knobs from JSON over ``base`` (defaults when ``None``); ``ValueError`` names the bad."""
        if not isinstance(data, Mapping):
            raise ValueError("fault knobs must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault knobs {unknown}; known: {sorted(known)}")
        changes = {name: cls.READERS[name](name, value) for name, value in data.items()}
        return replace(base or cls(), **changes)

    def to_json(self) -> dict[str, Any]:
        shown = asdict(self)
        low, high = self.latency_ms
        shown["latency_ms"] = low if low == high else [low, high]
        return shown

    def retry_delays(self) -> Iterator[float]:
        """The bank's own resend schedule: ``ipn_retries`` waits, growing by ``ipn_backoff``."""
        delay = self.ipn_retry_seconds
        for _ in range(self.ipn_retries):
            yield delay
            delay *= self.ipn_backoff
