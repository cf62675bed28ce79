"""The simulator toolkit's knobs, clock, statement and page pieces."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Any

import pytest

from banks.momo.simulator import MomoFaults
from banks.simulation import Faults, ManualClock, Settlement, daily_csv, pages

START = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


def test_defaults_are_a_well_behaved_bank() -> None:
    shown = Faults().to_json()
    assert shown["latency_ms"] == 0
    assert all(shown[k] == 0 for k in ("error_rate", "lose_confirmation", "tamper_amount"))
    assert (shown["ipn_retries"], shown["ipn_retry_seconds"]) == (10, 300)
    assert shown["reorder_confirmations"] is False


def test_knobs_read_and_show_back() -> None:
    faults = Faults.from_json(
        {"latency_ms": [10, 20], "error_rate": True, "duplicate_confirmation": 2}
    )
    assert faults.latency_ms == (10, 20)
    assert faults.error_rate == 1.0
    assert Faults.from_json(faults.to_json()) == faults


def test_knobs_apply_over_a_base() -> None:
    base = Faults.from_json({"error_rate": 0.5})
    assert Faults.from_json({"bad_signature": 1}, base=base).error_rate == 0.5
    assert Faults.from_json({"bad_signature": 1}).error_rate == 0


@pytest.mark.parametrize(
    ("knobs", "named"),
    [
        ({"no_such_knob": 1}, "no_such_knob"),
        ({"error_rate": 2}, "error_rate"),
        ({"error_rate": "0.5"}, "error_rate"),
        ({"latency_ms": [20, 10]}, "latency_ms"),
        ({"latency_ms": [1, 2, 3]}, "latency_ms"),
        ({"ipn_retries": -1}, "ipn_retries"),
        ({"ipn_retries": 1.5}, "ipn_retries"),
        ({"duplicate_confirmation": True}, "duplicate_confirmation"),
        ({"hang_seconds": 61}, "hang_seconds"),
        ({"ipn_backoff": 0.5}, "ipn_backoff"),
        ({"concurrent_duplicates": 1}, "concurrent_duplicates"),
    ],
)
def test_bad_knobs_are_named(knobs: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Faults.from_json(knobs)


def test_knobs_must_be_an_object() -> None:
    with pytest.raises(ValueError):
        Faults.from_json([])  # type: ignore[arg-type]


def test_a_bank_adds_its_own_knob() -> None:
    assert MomoFaults.from_json({"query_result_code": 43}).query_result_code == 43
    assert MomoFaults.from_json({"query_result_code": None}).query_result_code is None
    with pytest.raises(ValueError, match="query_result_code"):
        MomoFaults.from_json({"query_result_code": 0})
    with pytest.raises(ValueError, match="query_result_code"):
        Faults.from_json({"query_result_code": 43})


def test_retry_schedule_is_even_or_backs_off() -> None:
    assert list(Faults.from_json({"ipn_retries": 3, "ipn_retry_seconds": 5}).retry_delays()) == [
        5,
        5,
        5,
    ]
    backoff = Faults.from_json({"ipn_retries": 4, "ipn_retry_seconds": 1, "ipn_backoff": 3})
    assert list(backoff.retry_delays()) == [1, 3, 9, 27]
    assert list(Faults.from_json({"ipn_retries": 0}).retry_delays()) == []


async def test_manual_clock_wakes_waits_it_passes() -> None:
    clock = ManualClock(START)
    woke: list[float] = []

    async def wait(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(seconds)

    tasks = [asyncio.create_task(wait(s)) for s in (300, 60, 86_400)]
    await asyncio.sleep(0)
    assert clock.waiting == 3
    clock.advance(59)
    await asyncio.sleep(0)
    assert woke == []
    clock.advance(241)
    await asyncio.sleep(0)
    assert woke == [60, 300]
    clock.advance(86_400)
    await asyncio.gather(*tasks)
    assert woke == [60, 300, 86_400]
    assert clock() == datetime(2026, 11, 29, 3, 5, tzinfo=UTC)


def test_statement_takes_the_vietnamese_business_day() -> None:
    at = [
        datetime(2026, 11, 27, 16, 59, 59, tzinfo=UTC),  # 23:59:59 on the 27th in Hà Nội
        datetime(2026, 11, 27, 17, 0, 0, tzinfo=UTC),  # 00:00:00 on the 28th
        datetime(2026, 11, 28, 16, 59, 59, tzinfo=UTC),  # 23:59:59 on the 28th
        datetime(2026, 11, 28, 17, 0, 0, tzinfo=UTC),  # the 29th
    ]
    rows = [Settlement(str(9 - i), f"PH{i}", 1000 * (i + 1), "00", t, i) for i, t in enumerate(at)]

    header = ("id", "ref", "amount", "status", "pay_date", "fee", "merchant")
    text = daily_csv(header, reversed(rows), date(2026, 11, 28), "PAYHUB01")

    assert text.splitlines() == [
        "id,ref,amount,status,pay_date,fee,merchant",
        "8,PH1,2000,00,20261128000000,1,PAYHUB01",
        "7,PH2,3000,00,20261128235959,2,PAYHUB01",
    ]
    with pytest.raises(ValueError, match="7 columns"):
        daily_csv(header[:6], rows, date(2026, 11, 28), "PAYHUB01")


def test_page_pieces_escape_and_format() -> None:
    assert pages.vnd(2_550_000) == "2.550.000 VND"
    assert pages.deadline(START) == "28/11/2026 10:00:00 (GMT+7)"
    form = pages.outcome_form("pay", {"t": '"><x'}, [("success", "<b>")])
    assert "<x" not in form and "<b>" not in form
    assert pages.details([("a", "<i>")]) == "<table><tr><th>a</th><td>&lt;i&gt;</td></tr></table>"
