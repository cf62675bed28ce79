"""``payhub refunds pending|settle``: finance staff settle what a bank never answered."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from payhub.api.schemas import parse_payment_request, parse_refund_request
from payhub.connectors.port import RefundRequest, RefundResult
from payhub.domain.clock import system_clock
from payhub.errors import BankUnavailable
from payhub.service.payments import PaymentService
from payhub.service.refunds import RefundService
from payhub.service.routing import Router
from payhub.settings import load_settings
from payhub.store.audit import verify_chain
from payhub.store.engine import create_engine
from payhub.store.ledger import Ledger
from payhub.store.tables import audit_log, events, payments
from tests.factories import payment_body
from tests.fakes import FakeBank, confirmation
from tests.integration.test_cli import _config, _restore_logging, assert_one_line_error, cli

__all__ = ["_config", "_restore_logging"]  # fixtures shared with test_cli


class SilentBank(FakeBank):
    """VNPay as far as the refund goes: it takes it, and its answer never comes back."""

    async def refund(self, request: RefundRequest) -> RefundResult:
        raise BankUnavailable("VNPay refund: TimeoutError")


def _unanswered_refund(config: Path) -> tuple[str, str]:
    """A paid VNPay payment with a 1,000,000 VND refund its bank never answered."""

    async def make() -> tuple[str, str]:
        engine = create_engine(load_settings(config).database_url)
        ledger = Ledger(engine, system_clock)
        await ledger.start()
        bank: dict[str, Any] = {"vnpay": SilentBank("vnpay")}
        service = PaymentService(
            ledger=ledger,
            connectors=bank,
            router=Router(bank, "vnpay", system_clock),
            clock=system_clock,
        )
        body = parse_payment_request(payment_body("D-9", bank="vnpay"), known_banks={"vnpay"})
        payment = (await service.create("demo", "k1", body)).payment
        await service.confirm("vnpay", confirmation(payment.bank_reference, payment.amount))
        refund_body = parse_refund_request({"amount": 1_000_000, "reason": "paid twice"})
        refunds = RefundService(ledger=ledger, connectors=bank)
        refund = (await refunds.refund("demo", payment.id, "r1", refund_body)).refund
        await ledger.close()
        await engine.dispose()
        return payment.id, refund.id

    return asyncio.run(make())


def _stored(config: Path, payment_id: str) -> tuple[int, list[str], list[tuple[str, str]]]:
    async def read() -> tuple[int, list[str], list[tuple[str, str]]]:
        engine = create_engine(load_settings(config).database_url)
        async with engine.connect() as conn:
            refunded = await conn.scalar(
                select(payments.c.refunded_amount).where(payments.c.id == payment_id)
            )
            types = list(
                await conn.scalars(select(events.c.type).where(events.c.payment_id == payment_id))
            )
            audit = [
                (row.actor, row.action)
                for row in await conn.execute(
                    select(audit_log.c.actor, audit_log.c.action).order_by(audit_log.c.seq)
                )
            ]
        report = await verify_chain(engine)
        await engine.dispose()
        assert report.ok, report
        return int(refunded or 0), types, audit

    return asyncio.run(read())


def test_an_unanswered_refund_is_listed_then_settled_by_hand_once(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payment_id, refund_id = _unanswered_refund(config)
    capsys.readouterr()  # the refund_unanswered warning of the setup

    code, out, err = cli(capsys, "refunds", "pending", "--config", config, "--json")
    assert (code, err) == (0, ""), err
    [listed] = json.loads(out)["data"]
    assert listed["id"] == refund_id and listed["payment_id"] == payment_id
    assert listed["bank"] == "vnpay" and listed["status"] == "pending"
    assert listed["amount"] == 1_000_000 and listed["asked_again_at"] is not None
    code, out, _ = cli(capsys, "refunds", "pending", "--config", config)
    assert refund_id in out and "1,000,000 VND" in out and "1 pending refund(s)" in out

    note = "VNPay merchant portal: refund 14839201 done on 28/11"
    code, out, err = cli(
        capsys, "refunds", "settle", refund_id, "--config", config,
        "--succeeded", "--bank-refund-id", "14839201", "--note", note,
    )  # fmt: skip
    assert (code, err) == (0, ""), err
    assert f"refund {refund_id} succeeded" in out
    refunded, types, audit = _stored(config, payment_id)
    assert refunded == 1_000_000
    assert types == ["payment.succeeded", "refund.succeeded"]
    assert audit[-1] == ("operator:cli", "refund.succeeded")

    again = cli(
        capsys, "refunds", "settle", refund_id, "--config", config, "--failed", "--note", "x"
    )
    assert_one_line_error(again[0], again[2], "invalid_state", "succeeded")
    assert _stored(config, payment_id) == (refunded, types, audit)  # nothing changed
    code, out, _ = cli(capsys, "refunds", "pending", "--config", config)
    assert (code, out) == (0, "0 pending refund(s)\n")


def test_settling_refuses_what_it_cannot_stand_behind(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payment_id, refund_id = _unanswered_refund(config)
    capsys.readouterr()  # the refund_unanswered warning of the setup
    before = _stored(config, payment_id)

    unknown = cli(capsys, "refunds", "settle", "rfd_nope", "--config", config,
                  "--failed", "--note", "checked")  # fmt: skip
    assert_one_line_error(unknown[0], unknown[2], "not_found", "rfd_nope")
    blank = cli(capsys, "refunds", "settle", refund_id, "--config", config,
                "--failed", "--note", "  ")  # fmt: skip
    assert_one_line_error(blank[0], blank[2], "validation_failed")
    both = cli(capsys, "refunds", "settle", refund_id, "--config", config,
               "--failed", "--succeeded", "--note", "x")  # fmt: skip
    assert both[0] == 2 and "not allowed with" in both[2]
    no_note = cli(capsys, "refunds", "settle", refund_id, "--config", config, "--failed")
    assert no_note[0] == 2 and "--note" in no_note[2]
    assert _stored(config, payment_id) == before

    failed = cli(capsys, "refunds", "settle", refund_id, "--config", config,
                 "--failed", "--note", "VNPay: no refund on 28/11")  # fmt: skip
    assert failed[0] == 0, failed[2]
    refunded, types, audit = _stored(config, payment_id)
    assert refunded == 0 and types[-1] == "refund.failed"
    assert audit[-1] == ("operator:cli", "refund.failed")
