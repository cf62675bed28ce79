"""The demo's plan: the banks in turn, each playing only the scenarios it can."""

from __future__ import annotations

from payhub.demo import FAULTS, QUERY, REMOTE, REPORTS_FAILURE, SCENARIOS, plan


def test_a_bank_without_query_or_faults_plays_only_plain_scenarios() -> None:
    full = frozenset(
        {QUERY, FAULTS, REMOTE, REPORTS_FAILURE, "insufficient_funds", "pay_twice", "cancel"}
    )
    chosen, skipped = plan({"momo": full, "transfer": frozenset()}, 40)

    assert [bank for bank, _ in chosen[:4]] == ["momo", "transfer", "momo", "transfer"]
    plain = {s.name for bank, s in chosen if bank == "transfer"}
    assert plain == {
        "pays at once",
        "pays; portal retried its request",
        "portal cancels before paying",
    }
    assert {s.name for bank, s in chosen if bank == "momo"} == {s.name for s in SCENARIOS}
    assert "momo" not in {bank for bank, names in skipped.items() if names}
    assert len(skipped["transfer"]) == len(SCENARIOS) - 3
