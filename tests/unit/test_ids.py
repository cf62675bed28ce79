"""Identifiers: prefixed, time-ordered, and never repeated."""

from __future__ import annotations

import re

from payhub.domain.ids import new_id, random_bits


def test_ids_are_prefixed_ulids_sorted_by_time() -> None:
    ids = [new_id("pay") for _ in range(2000)]
    assert all(re.fullmatch(r"pay_[0-9a-hjkmnp-tv-z]{26}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    millis = [i[4:14] for i in ids]
    assert millis == sorted(millis)


def test_random_bits_stay_in_range_and_vary() -> None:
    for bits in (1, 5, 45, 80):
        values = [random_bits(bits) for _ in range(400)]
        assert all(0 <= v < 2**bits for v in values)
        assert len(set(values)) > 1
    assert max(random_bits(45) for _ in range(400)) >= 2**44  # the top bit is used too
