"""Routing decisions: the portal's bank, the operator's rules, the breakers, and the log line.

Connectors here are stand-ins carrying only what routing reads of them (their limits);
the clock is a ``FakeClock``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from payhub.api.schemas import parse_payment_request
from payhub.domain.clock import FakeClock
from payhub.domain.requests import ItemKind
from payhub.routing import (
    AgencyPattern,
    BankScope,
    BreakerPolicy,
    NoBankAvailable,
    PreferenceRule,
    Router,
    RouteRequest,
    RoutingSettings,
)
from tests.factories import payment_body

POLICY = BreakerPolicy(failure_threshold=2, failure_rate_percent=0, open_seconds=30)


class Limits:
    """What routing reads of a connector: its amount limits."""

    def __init__(self, low: int = 1, high: int = 100_000_000_000) -> None:
        self.min_amount = low
        self.max_amount = high


def banks(**limits: tuple[int, int]) -> dict[str, Any]:
    return {name: Limits(*pair) for name, pair in limits.items()}


VNPAY_MOMO = banks(vnpay=(1, 100_000_000_000), momo=(1_000, 50_000_000))


def router(
    connectors: dict[str, Any] | None = None,
    default_bank: str | None = None,
    **routing: Any,
) -> tuple[Router, FakeClock]:
    clock = FakeClock()
    config = RoutingSettings(breaker=POLICY, **routing)
    return Router(connectors or VNPAY_MOMO, default_bank, clock, config), clock


def request(amount: int = 2_550_000, kinds: tuple[str, ...] = ("fee",), agency: str = "H29.17"):
    return RouteRequest(amount, frozenset(kinds), agency)


def test_a_route_request_takes_only_amount_kinds_and_agency_of_a_payment() -> None:
    body = payment_body()
    body["items"].append({"kind": "fine", "code": "XP", "description": "Phạt", "amount": 1})
    body["amount"] += 1
    parsed = parse_payment_request(body, known_banks={"vnpay"})
    assert RouteRequest.for_payment(parsed) == RouteRequest(
        2_550_001, frozenset({"charge", "fee", "fine"}), "H29.17"
    )


# --- order --------------------------------------------------------------------------------


def test_without_a_routing_section_the_default_bank_comes_first() -> None:
    r, _ = router(default_bank="momo")
    assert r.candidates(request()) == ["momo", "vnpay"]
    r, _ = router()
    assert r.candidates(request()) == ["vnpay", "momo"]  # the order of the file


def test_the_configured_order_is_followed_and_unnamed_banks_come_after() -> None:
    connectors = banks(a=(1, 10**9), b=(1, 10**9), c=(1, 10**9))
    r, _ = router(connectors, order=("c", "a"))
    assert r.candidates(request()) == ["c", "a", "b"]


def test_a_bank_outside_its_connector_limits_is_left_out_as_limit() -> None:
    r, _ = router(default_bank="momo")
    route = r.route(request(50_000_001))
    assert route.banks == ("vnpay",)
    assert route.excluded == {"momo": "limit"}
    assert r.candidates(request(999)) == ["vnpay"]
    assert r.candidates(request(50_000_000)) == ["momo", "vnpay"]


def test_no_bank_for_the_amount_is_an_empty_list_not_unavailable() -> None:
    r, _ = router(banks(momo=(1_000, 50_000_000)))
    route = r.route(request(60_000_000))
    assert route.banks == () and not route.unavailable
    assert r.candidates(request(60_000_000)) == []


def test_a_bare_amount_is_still_understood() -> None:
    r, _ = router(default_bank="momo")
    assert r.candidates(60_000_000) == ["vnpay"]
    assert r.candidates(5_000) == ["momo", "vnpay"]


# --- the portal's choice -------------------------------------------------------------------


def test_the_portals_bank_is_the_only_candidate() -> None:
    r, _ = router(order=("vnpay", "momo"))
    route = r.route(request(), chosen="momo")
    assert route.banks == ("momo",) and route.reason == "portal"


def test_the_portals_bank_outside_its_limits_is_never_swapped() -> None:
    r, _ = router()
    assert r.candidates(request(60_000_000), chosen="momo") == []
    assert r.limits("momo") == (1_000, 50_000_000)


def test_the_portals_bank_is_held_only_to_its_connectors_limits() -> None:
    scope = BankScope(max_amount=1_000_000, kinds=frozenset({"fee"}), agencies=())
    r, _ = router(banks={"momo": scope})
    assert r.candidates(request(2_000_000, ("tax",)), chosen="momo") == ["momo"]
    assert r.candidates(request(2_000_000, ("tax",))) == ["vnpay"]


def test_the_portals_bank_with_its_breaker_open_is_503_not_another_bank() -> None:
    r, clock = router()
    r.record_failure("momo")
    r.record_failure("momo")
    with pytest.raises(NoBankAvailable) as info:
        r.candidates(request(), chosen="momo")
    assert info.value.status == 503 and info.value.code == "bank_unavailable"
    assert info.value.headers == {"Retry-After": "30"}
    clock.advance(12.5)
    with pytest.raises(NoBankAvailable) as info:
        r.candidates(request(), chosen="momo")
    assert info.value.headers == {"Retry-After": "18"}


# --- the operator's scope per bank ----------------------------------------------------------


def test_configured_amount_limits_narrow_the_connectors() -> None:
    r, _ = router(banks={"vnpay": BankScope(min_amount=100_000, max_amount=1_000_000)})
    assert r.route(request(99_999)).excluded == {"vnpay": "limit"}
    assert r.candidates(request(100_000)) == ["vnpay", "momo"]
    assert r.candidates(request(1_000_000)) == ["vnpay", "momo"]
    assert r.route(request(1_000_001)).excluded == {"vnpay": "limit"}


def test_a_bank_limited_to_kinds_takes_only_bills_whose_every_item_is_of_them() -> None:
    r, _ = router(banks={"momo": BankScope(kinds=frozenset({"fee", "charge"}))})
    assert r.candidates(request(kinds=("fee", "charge"))) == ["vnpay", "momo"]
    route = r.route(request(kinds=("fee", "tax")))
    assert route.banks == ("vnpay",) and route.excluded == {"momo": "rule"}


def test_a_bank_limited_to_agencies_matches_codes_and_prefixes() -> None:
    scope = BankScope(agencies=(AgencyPattern.parse("H29.*"), AgencyPattern.parse("BNV")))
    r, _ = router(banks={"momo": scope})
    for agency in ("H29", "H29.17", "H29.17.03", "BNV"):
        assert "momo" in r.candidates(request(agency=agency)), agency
    for agency in ("H290", "H2", "BNV.01", "G01.29"):
        assert r.route(request(agency=agency)).excluded == {"momo": "rule"}, agency


def test_a_restricted_bank_is_not_chosen_when_the_request_does_not_say() -> None:
    r, _ = router(
        banks={
            "momo": BankScope(kinds=frozenset({"fee"})),
            "vnpay": BankScope(agencies=(AgencyPattern("H29"),)),
        }
    )
    assert r.candidates(2_000) == []
    assert r.candidates(request(2_000, ("fee",), "H29")) == ["vnpay", "momo"]


# --- preference rules ------------------------------------------------------------------------


def test_the_first_matching_rule_puts_its_banks_first() -> None:
    rules = (
        PreferenceRule(prefer=("momo",), kinds=frozenset({"tax"})),
        PreferenceRule(prefer=("momo",), agencies=(AgencyPattern.parse("H01.*"),)),
        PreferenceRule(prefer=("vnpay",), min_amount=1),
    )
    connectors = banks(vnpay=(1, 10**11), momo=(1_000, 50_000_000), qr=(1, 10**11))
    r, _ = router(connectors, order=("qr", "vnpay", "momo"), rules=rules)
    tax = r.route(request(kinds=("tax",)))
    assert tax.banks == ("momo", "qr", "vnpay") and tax.reason == "rule[0]"
    assert r.route(request(agency="H01.5")).banks == ("momo", "qr", "vnpay")
    rest = r.route(request(agency="H29"))
    assert rest.banks == ("vnpay", "qr", "momo") and rest.reason == "rule[2]"


def test_a_rule_needs_every_criterion_it_has() -> None:
    rule = PreferenceRule(
        prefer=("momo",), kinds=frozenset({"fine"}), agencies=(AgencyPattern("C06"),),
        min_amount=100_000, max_amount=1_000_000,
    )  # fmt: skip
    r, _ = router(rules=(rule,))
    assert r.route(request(500_000, ("fine",), "C06")).reason == "rule[0]"
    for miss in (
        request(500_000, ("fine", "fee"), "C06"),
        request(500_000, ("fine",), "C07"),
        request(99_999, ("fine",), "C06"),
        request(1_000_001, ("fine",), "C06"),
    ):
        assert r.route(miss).reason == "order"
        assert r.candidates(miss)[0] == "vnpay"


def test_a_preferred_bank_outside_its_limits_is_still_left_out() -> None:
    r, _ = router(rules=(PreferenceRule(prefer=("momo",), min_amount=1),))
    assert r.candidates(request(60_000_000)) == ["vnpay"]


# --- health ----------------------------------------------------------------------------------


def test_a_bank_with_its_breaker_open_is_left_out_and_the_next_one_tried() -> None:
    r, clock = router(order=("momo", "vnpay"))
    r.record_failure("momo")
    assert r.candidates(request()) == ["momo", "vnpay"]
    r.record_failure("momo")
    route = r.route(request())
    assert route.banks == ("vnpay",) and route.excluded == {"momo": "breaker_open"}
    clock.advance(30)
    assert r.candidates(request()) == ["momo", "vnpay"]  # the one trial
    assert r.route(request()).excluded == {"momo": "breaker_open"}  # no second one
    r.record_success("momo")
    assert r.candidates(request()) == ["momo", "vnpay"]
    assert r.candidates(request()) == ["momo", "vnpay"]


def test_every_eligible_bank_down_is_unavailable_with_the_soonest_retry() -> None:
    r, clock = router()
    for bank in ("momo", "vnpay"):
        r.record_failure(bank)
        r.record_failure(bank)
        clock.advance(10)
    route = r.route(request())
    assert route.unavailable and route.banks == ()
    assert route.retry_after == pytest.approx(10)  # momo reopens first
    with pytest.raises(NoBankAvailable):
        r.candidates(request())


def test_an_amount_only_a_down_bank_takes_is_unavailable() -> None:
    r, _ = router()
    r.record_failure("vnpay")
    r.record_failure("vnpay")
    route = r.route(request(60_000_000))
    assert route.excluded == {"vnpay": "breaker_open", "momo": "limit"}
    assert route.unavailable


def test_outcomes_of_unknown_banks_are_ignored() -> None:
    r, _ = router()
    r.record_failure("sacombank")
    r.record_success("sacombank")
    assert r.candidates(request()) == ["vnpay", "momo"]


# --- the log line ----------------------------------------------------------------------------


@pytest.fixture(name="info_logs")
def _info_logs() -> Iterator[None]:
    """Info level whatever another test configured (the CLI's demo sets ERROR)."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(wrapper_class=saved["wrapper_class"])


def test_each_decision_is_logged_with_its_reasons(info_logs: None) -> None:
    r, _ = router(banks={"vnpay": BankScope(kinds=frozenset({"fee"}))}, order=("momo", "vnpay"))
    r.record_failure("momo")
    r.record_failure("momo")
    with capture_logs() as logs:
        r.candidates(request(60_000_000, ("tax", "fee"), "H29.17"))
        r.candidates(request(5_000), chosen="vnpay")
    decisions = [e for e in logs if e["event"] == "routing_decision"]
    assert decisions[0] == {
        "event": "routing_decision",
        "log_level": "info",
        "amount": 60_000_000,
        "kinds": ["fee", "tax"],
        "agency": "H29.17",
        "chosen": None,
        "candidates": [],
        "excluded": {"momo": "limit", "vnpay": "rule"},
        "reason": "order",
    }
    assert decisions[1]["candidates"] == ["vnpay"] and decisions[1]["reason"] == "portal"


def test_breaker_changes_are_logged(info_logs: None) -> None:
    r, clock = router()
    with capture_logs() as logs:
        r.record_failure("momo")
        r.record_failure("momo")
        clock.advance(30)
        r.candidates(request())
        r.record_success("momo")
    changes = [(e["bank"], e["previous"], e["state"]) for e in logs if e["event"] == "bank_breaker"]
    assert changes == [("momo", "closed", "open"), ("momo", "half_open", "closed")]


# --- properties ------------------------------------------------------------------------------

NAMES = ["a", "b", "c", "d"]
AMOUNT = st.integers(min_value=1, max_value=200_000_000)
KINDS = st.frozensets(st.sampled_from([k.value for k in ItemKind]), min_size=1)
AGENCY = st.sampled_from(["H29", "H29.17", "H290", "BNV", "C06.1"])


@st.composite
def scopes(draw: st.DrawFn) -> BankScope:
    low = draw(st.none() | AMOUNT)
    high = draw(st.none() | AMOUNT)
    if low is not None and high is not None and low > high:
        low, high = high, low
    agencies = draw(st.none() | st.lists(st.sampled_from(["H29.*", "BNV", "C06.*"]), min_size=1))
    return BankScope(
        min_amount=low,
        max_amount=high,
        kinds=draw(st.none() | KINDS),
        agencies=None if agencies is None else tuple(AgencyPattern.parse(a) for a in agencies),
    )


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    limits=st.lists(st.tuples(AMOUNT, AMOUNT), min_size=1, max_size=4),
    failures=st.lists(st.sampled_from(NAMES), max_size=12),
)
def test_never_a_bank_outside_its_limits_or_scope(
    data: st.DataObject, limits: list[tuple[int, int]], failures: list[str]
) -> None:
    connectors = {n: Limits(min(pair), max(pair)) for n, pair in zip(NAMES, limits, strict=False)}
    scoped = {n: data.draw(scopes(), label=f"scope {n}") for n in connectors}
    r, _ = router(connectors, banks=scoped)
    for bank in failures:
        r.record_failure(bank)
    for _ in range(5):
        req = RouteRequest(data.draw(AMOUNT), data.draw(st.none() | KINDS), data.draw(AGENCY))
        chosen = data.draw(st.none() | st.sampled_from(list(connectors)), label="chosen")
        try:
            found = r.candidates(req, chosen)
        except NoBankAvailable:
            found = []
        assert len(set(found)) == len(found)
        for bank in found:
            connector = connectors[bank]
            assert connector.min_amount <= req.amount <= connector.max_amount
            if chosen is not None:
                assert found == [chosen]
                continue
            scope = scoped[bank]
            assert scope.min_amount is None or req.amount >= scope.min_amount
            assert scope.max_amount is None or req.amount <= scope.max_amount
            assert scope.kinds is None or (req.kinds is not None and req.kinds <= scope.kinds)
            assert scope.agencies is None or any(
                p.matches(req.agency_code or "") for p in scope.agencies
            )
