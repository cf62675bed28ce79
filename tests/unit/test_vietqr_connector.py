"""The VietQR connector's own rules: its QR, its answer to a notification, its setup by init."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from banks.vietqr import signing
from banks.vietqr.cash_report import Account, Credit, notification
from banks.vietqr.connector import VietqrConnector
from banks.vietqr.emvco import decode_vietqr
from banks.vietqr.simulator import _signing_key
from payhub.connectors.port import (
    ConfirmationOutcome,
    ConfirmationStatus,
    InboundMessage,
    OrderRequest,
    gravest,
)
from payhub.errors import ProblemError
from payhub.settings import load_settings
from payhub.setup import init_setup, private_key_files

Outcome = ConfirmationOutcome
PRIVATE, PUBLIC = signing.new_demo_key_pair()
OPTIONS = {"bin": "970436", "account": "0011004125678", "bank_public_key": PUBLIC}


def connector(**extra: str) -> VietqrConnector:
    return VietqrConnector("vietqr", {**OPTIONS, **extra}, None)  # type: ignore[arg-type]


def signed(credits: list[Credit]) -> InboundMessage:
    body = notification("VQR", datetime.now(UTC), Account("970436", "0011004125678"), credits)
    header = signing.sign(signing.load_private_key(PRIVATE), body)
    return InboundMessage("POST", {}, {signing.HEADER: header}, body)


def order(reference: str = "PH0B1Q5NPN02") -> OrderRequest:
    now = datetime.now(UTC)
    return OrderRequest("pay_1", reference, 2_550_000, "Lệ phí", "https://p", now, now)


async def test_the_order_is_a_dynamic_qr_and_optionally_a_page() -> None:
    placed = await connector(base_url="http://sim/vietqr/").place_order(order())

    qr = decode_vietqr(placed.qr or "")
    assert (qr.bin, qr.account, qr.amount, qr.purpose) == (
        "970436",
        "0011004125678",
        2_550_000,
        "PH0B1Q5NPN02",
    )
    assert (placed.payment_url or "").startswith("http://sim/vietqr/qr?payload=000201")
    assert (await connector().place_order(order())).payment_url is None


def test_each_credit_is_read_with_its_reference_and_status() -> None:
    at = datetime(2026, 11, 28, 3, 5, tzinfo=UTC)
    credits = [
        Credit("FT1", "E1", 2_550_000, "MBVCB.1234567.ph0b-1q5n-pn02.CT tu 0123456789", at),
        Credit("FT2", "E2", 700_000, "Chuyen tien hoc phi", at),
        Credit("FT3", "E3", 2_550_000, "PH0B1Q5NPN02", at, "PDNG"),
        Credit("FT4", "PHZ0TGH5V0JV", 2_550_000, "PH0B1Q5NPN02", at),
        Credit("FT5", "PH0B1Q5NPN02", 2_550_000, "IBFT chuyen khoan", at),
    ]

    read = connector().parse_confirmation(signed(credits))

    assert [(c.bank_reference, c.amount, c.status, c.bank_transaction_id) for c in read] == [
        ("PH0B1Q5NPN02", 2_550_000, ConfirmationStatus.SUCCEEDED, "FT1"),
        ("", 700_000, ConfirmationStatus.SUCCEEDED, "FT2"),
        ("PH0B1Q5NPN02", 2_550_000, ConfirmationStatus.PENDING, "FT3"),
        ("", 2_550_000, ConfirmationStatus.SUCCEEDED, "FT4"),  # text and ids disagree: none
        ("PH0B1Q5NPN02", 2_550_000, ConfirmationStatus.SUCCEEDED, "FT5"),  # found in an id
    ]
    assert read[0].paid_at == at and read[2].paid_at is None


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        ([Outcome.APPLIED], 200),
        ([Outcome.APPLIED, Outcome.UNKNOWN_ORDER, Outcome.AMOUNT_MISMATCH], 200),
        ([], 200),
        ([Outcome.APPLIED, Outcome.ERROR], 503),
        ([Outcome.SIGNATURE_INVALID], 400),
        ([Outcome.MALFORMED], 400),
    ],
)
def test_one_answer_covers_the_whole_document(outcomes: list[Outcome], status: int) -> None:
    answer = connector().answer_confirmations(outcomes)

    assert answer.status == status
    assert f'"outcomes": [{", ".join(f"{o.value!r}" for o in outcomes)}]'.replace("'", '"') in (
        answer.body.decode()
    )


def test_the_gravest_outcome_speaks_for_a_message() -> None:
    assert gravest([Outcome.APPLIED, Outcome.ERROR, Outcome.UNKNOWN_ORDER]) is Outcome.ERROR
    assert gravest([Outcome.ALREADY_APPLIED, Outcome.APPLIED]) is Outcome.ALREADY_APPLIED
    assert gravest([]) is Outcome.IGNORED


async def test_refunds_are_refused_as_not_supported() -> None:
    assert VietqrConnector.supports_refund is False
    with pytest.raises(ProblemError) as refused:
        await connector().refund(None)  # type: ignore[arg-type]
    assert refused.value.code == "refund_not_supported"


def test_init_configures_vietqr_with_its_simulator_key_kept_private(tmp_path: Path) -> None:
    config = init_setup(tmp_path, port=18_080)

    bank = load_settings(config).banks["vietqr"]
    key_file = Path(bank.options["simulator_signing_key_file"])
    assert key_file == tmp_path / "keys" / "vietqr-bank.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file in private_key_files(tmp_path)
    assert "BEGIN PRIVATE KEY" not in config.read_text()
    assert bank.options["base_url"] == "http://127.0.0.1:18080/sim/vietqr"
    # the simulator's key and the hub's public key are one pair
    body = b"<Document/>"
    header = signing.sign(signing.load_private_key(_signing_key(bank.options)), body)
    public = signing.load_public_key(bank.options["bank_public_key"])
    assert signing.verify(public, body, header)
    assert not signing.verify(public, body + b" ", header)


def test_checked_options_name_the_problem() -> None:
    problems = VietqrConnector.check_options(
        {"bin": "97043", "account": "x" * 20, "bank_public_key": "nope", "base_url": "ftp://x"}
    )

    assert len(problems) == 4
