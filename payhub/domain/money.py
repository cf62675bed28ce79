"""Money is an ``int`` of VND; every conversion to another unit is explicit and exact."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

CURRENCY = "VND"
MIN_PAYMENT = 1
MAX_PAYMENT = 100_000_000_000


def vnd_from_decimal(value: Decimal | str) -> int:
    """A whole VND amount from a statement's decimal text; a fraction is an error."""
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError) as exc:
        raise ValueError(f"not a decimal amount: {value!r}") from exc
    if not amount.is_finite() or amount != amount.to_integral_value():
        raise ValueError(f"VND amount with a fraction: {value!r}")
    return int(amount)


def to_minor_units(amount: int, factor: int = 100) -> int:
    """VND to a gateway's ×factor integer (VNPay sends VND × 100)."""
    if type(amount) is not int:
        raise TypeError("amount must be an int of VND")
    return amount * factor


def from_minor_units(value: int | str, factor: int = 100) -> int:
    """A gateway's ×factor integer back to VND; a remainder is an error, never rounded."""
    minor = int(value)
    whole, remainder = divmod(minor, factor)
    if remainder:
        raise ValueError(f"{value!r} is not a whole number of VND × {factor}")
    return whole
