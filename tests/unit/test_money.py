"""Money conversions at the edges are exact: a fraction of a dong is an error, never rounded."""

from __future__ import annotations

from decimal import Decimal

import pytest

from payhub.domain.money import from_minor_units, to_minor_units, vnd_from_decimal


@pytest.mark.parametrize(("text", "vnd"), [("2550000", 2550000), ("2550000.00", 2550000), ("0", 0)])
def test_whole_decimal_amounts(text: str, vnd: int) -> None:
    assert vnd_from_decimal(text) == vnd
    assert vnd_from_decimal(Decimal(text)) == vnd


@pytest.mark.parametrize("text", ["2550000.5", "0.01", "NaN", "Infinity", "abc", ""])
def test_fractions_and_garbage_are_errors(text: str) -> None:
    with pytest.raises(ValueError):
        vnd_from_decimal(text)


def test_minor_units_round_trip_and_refuse_remainders() -> None:
    assert to_minor_units(2550000) == 255000000
    assert from_minor_units("255000000") == 2550000
    with pytest.raises(ValueError):
        from_minor_units("255000050")
    with pytest.raises(TypeError):
        to_minor_units(1.5)  # type: ignore[arg-type]
