"""Logs: secrets redacted, ID numbers and phones masked, identifiers and amounts kept."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from payhub.domain.ids import new_id
from payhub.domain.reference import new_bank_reference
from payhub.observability.logging import (
    REDACTED,
    configure_logging,
    log_processors,
    mask_number,
    mask_text,
    protect,
    register_secret,
    renderer,
)

ID_NUMBER = "001090001234"
CMND = "123456789"
PHONE = "0912345678"
VNPAY_SECRET = "PAYHUBTESTSECRET0123456789ABCDEF"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Other tests configure structlog and the root logger too: leave both as found."""
    saved = structlog.get_config()
    processors = list(saved["processors"])
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(
        processors=processors,
        wrapper_class=saved["wrapper_class"],
        context_class=saved["context_class"],
        logger_factory=saved["logger_factory"],
        cache_logger_on_first_use=saved["cache_logger_on_first_use"],
    )
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.contextvars.clear_contextvars()


def render(**event: Any) -> str:
    """One event through the production processors and the JSON renderer."""
    structlog.contextvars.clear_contextvars()
    event.setdefault("event", "test")
    result: Any = event
    for processor in [*log_processors(), renderer(json=True)]:
        result = processor(None, "info", result)
    assert isinstance(result, str)
    return result


def protected(**event: Any) -> dict[str, Any]:
    return dict(protect(None, "info", dict(event)))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# --- masking --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        (ID_NUMBER, "*********234"),
        (CMND, "******789"),
        (PHONE, "*******678"),
        ("+84912345678", "+********678"),
        ("0912 345 678", "**** *** 678"),
        ("12345", "*****"),
        ("", "***"),
    ],
)
def test_mask_number_keeps_at_most_the_last_three_digits(value: str, masked: str) -> None:
    assert mask_number(value) == masked


def test_personal_keys_are_masked_at_any_depth_and_type() -> None:
    event = protected(
        payer={"name": "Nguyễn Văn An", "id_number": ID_NUMBER, "phone": PHONE},
        payers=[{"cccd": ID_NUMBER}, {"cmnd": int(CMND)}],
        phone_number=PHONE,
        payerPhone=["+84 912 345 678"],
    )
    assert event["payer"] == {
        "name": "Nguyễn Văn An",
        "id_number": "*********234",
        "phone": "*******678",
    }
    assert event["payers"] == [{"cccd": "*********234"}, {"cmnd": "******789"}]
    assert event["phone_number"] == "*******678"
    assert event["payerPhone"] == ["+** *** *** 678"]


@pytest.mark.parametrize(
    "text",
    [
        f"payer {ID_NUMBER} paid",
        f"cmnd:{CMND}",
        f"call {PHONE}.",
        "call 0912 345 678 or 0912.345.678 or 091-234-5678",
        "call +84 912 345 678 or +84912345678 or 84912345678",
        f"id={ID_NUMBER}&x=1",
        f"CCCD{ID_NUMBER}",
    ],
)
def test_numbers_in_free_text_are_masked(text: str) -> None:
    masked = mask_text(text)
    for number in (ID_NUMBER, CMND, PHONE, "912345678", "345678", "2345678"):
        assert number not in masked.replace(" ", "").replace(".", "").replace("-", "")


@pytest.mark.parametrize(
    "key",
    [
        "hash_secret",
        "secret",
        "password",
        "private_key",
        "token",
        "access_token",
        "signature",
        "Signature-Input",
        "whsec",
        "webhook_secret",
        "authorization",
        "Authorization",
        "api_key",
        "X-Api-Key",
        "vnp_SecureHash",
        "key",
        "cookie",
    ],
)
@pytest.mark.parametrize("value", [VNPAY_SECRET, b"raw-bytes-secret", 123456, {"nested": "x"}])
def test_values_under_secret_keys_are_replaced(key: str, value: Any) -> None:
    event = protected(**{key: value})
    assert event[key] == REDACTED


def test_nested_secret_keys_are_replaced() -> None:
    event = protected(bank={"options": {"tmn_code": "PAYHUB01", "hash_secret": VNPAY_SECRET}})
    assert event["bank"] == {"options": {"tmn_code": "PAYHUB01", "hash_secret": REDACTED}}


@pytest.mark.parametrize(
    "text",
    [
        f"hash_secret={VNPAY_SECRET}",
        f"signing with {{'hash_secret': '{VNPAY_SECRET}'}}",
        f'{{"secret": "{VNPAY_SECRET}"}}',
        f"vnp_Amount=255000000&vnp_SecureHash={VNPAY_SECRET}",
        f"Authorization: Bearer {VNPAY_SECRET}",
        f"whsec_{VNPAY_SECRET}",
        f"postgresql://payhub:{VNPAY_SECRET}@db.example:5432/payhub",
        f"-----BEGIN PRIVATE KEY-----\n{VNPAY_SECRET}\n-----END PRIVATE KEY-----",
    ],
)
def test_secrets_in_free_text_are_redacted(text: str) -> None:
    masked = mask_text(text)
    assert VNPAY_SECRET not in masked
    assert REDACTED in masked


def test_objects_are_scanned_as_text() -> None:
    @dataclass
    class BankOptions:
        tmn_code: str
        hash_secret: str
        hotline: str

    event = protected(options=BankOptions("PAYHUB01", VNPAY_SECRET, PHONE))
    assert "PAYHUB01" in event["options"]
    assert VNPAY_SECRET not in event["options"]
    assert PHONE not in event["options"]


def test_registered_secrets_are_redacted_anywhere() -> None:
    secret = "a-configured-secret-of-no-particular-shape"
    register_secret(secret)
    assert mask_text(f"oops {secret}!") == f"oops {REDACTED}!"


def test_identifiers_amounts_and_times_survive() -> None:
    payment_id = new_id("pay")
    request_id = new_id("req")
    reference = new_bank_reference()
    event = protected(
        event=f"payment {payment_id} reference {reference} PH1A2B3C4D5E",
        payment_id=payment_id,
        request_id=request_id,
        bank_reference="PH1A2B3C4D5E",
        amount=2550000,
        paid_amount=100_000_000_000,
        total="100000000000",
        vnp_Amount="255000000",
        vnp_PayDate="20261127101500",
        duration_ms=12.5,
        created_at="2026-11-27T10:15:00.123456+07:00",
        timestamp="2026-11-27T03:15:00.123456Z",
        status=201,
        route="/v1/payments/{id}",
    )
    assert event == {
        "event": f"payment {payment_id} reference {reference} PH1A2B3C4D5E",
        "payment_id": payment_id,
        "request_id": request_id,
        "bank_reference": "PH1A2B3C4D5E",
        "amount": 2550000,
        "paid_amount": 100_000_000_000,
        "total": "100000000000",
        "vnp_Amount": "255000000",
        "vnp_PayDate": "20261127101500",
        "duration_ms": 12.5,
        "created_at": "2026-11-27T10:15:00.123456+07:00",
        "timestamp": "2026-11-27T03:15:00.123456Z",
        "status": 201,
        "route": "/v1/payments/{id}",
    }


def test_amount_keys_do_not_shelter_free_text_or_integers_elsewhere() -> None:
    event = protected(amount=f"paid by {PHONE}", account=int(ID_NUMBER[2:]), seq=7)
    assert event["amount"] == "paid by *******678"
    assert event["account"] == "*******234"
    assert event["seq"] == 7


def test_a_bank_reference_shape_does_not_shelter_a_phone() -> None:
    assert mask_text(f"PH{PHONE}") == "PH*******678"


# --- the whole chain: tracebacks, renderers, the standard library ----------------------


def test_tracebacks_are_formatted_before_protect() -> None:
    chain = log_processors()
    assert chain.index(structlog.processors.format_exc_info) < chain.index(protect)
    assert chain[0] is structlog.contextvars.merge_contextvars


def test_exception_text_in_a_traceback_is_masked() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    log = structlog.get_logger("test")
    try:
        raise ValueError(f"payer {ID_NUMBER} phone {PHONE} hash_secret={VNPAY_SECRET}")
    except ValueError:
        log.exception("failed", payer_phone=PHONE)
    line = json.loads(stream.getvalue())
    assert "Traceback (most recent call last)" in line["exception"]
    assert "*********234" in line["exception"]
    for leaked in (ID_NUMBER, PHONE, VNPAY_SECRET):
        assert leaked not in stream.getvalue()


def test_json_lines_when_the_stream_is_not_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    structlog.contextvars.bind_contextvars(request_id="req_test")
    structlog.get_logger("test").info("payment_created", amount=2550000, phone=PHONE)
    structlog.get_logger("test").debug("not_shown")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["event"] == "payment_created"
    assert line["level"] == "info"
    assert line["request_id"] == "req_test"
    assert line["amount"] == 2550000
    assert line["phone"] == "*******678"
    assert line["timestamp"].endswith("Z")


def test_key_values_on_a_terminal() -> None:
    stream = _Terminal()
    configure_logging(stream=stream)
    structlog.get_logger("test").info("payment_created", amount=2550000, phone=PHONE)
    output = stream.getvalue()
    assert "payment_created" in output
    assert "amount=2550000" in output
    assert "phone=*******678" in output
    with pytest.raises(json.JSONDecodeError):
        json.loads(output)


def test_json_can_be_forced_on_a_terminal() -> None:
    stream = _Terminal()
    configure_logging(json=True, stream=stream)
    structlog.get_logger("test").info("x")
    assert json.loads(stream.getvalue())["event"] == "x"


def test_standard_library_records_pass_through_the_same_processors() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    logging.getLogger("aiohttp.server").warning("payer %s, secret=%s", PHONE, VNPAY_SECRET)
    line = json.loads(stream.getvalue())
    assert line["event"] == f"payer *******678, secret={REDACTED}"
    assert line["logger"] == "aiohttp.server"
    assert line["level"] == "warning"


def test_configuring_twice_keeps_one_bridge() -> None:
    stream = io.StringIO()
    configure_logging(stream=io.StringIO())
    configure_logging(stream=stream)
    logging.getLogger("payhub.test").warning("once")
    assert len(stream.getvalue().splitlines()) == 1


# --- property: no personal number survives rendering -----------------------------------

_SEPARATORS = st.sampled_from(list(" \t\n,;:()[]{}/\\|'\"=#!?<>*~"))
_NON_AMOUNT_KEYS = st.sampled_from(
    ["event", "detail", "reason", "error", "note", "query", "dossier_code", "bank_reference"]
)
_DIGITS9 = st.from_regex(r"\A[0-9]{9}\Z")


@st.composite
def _phones(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(["0", "84", "+84"]))
    digits = draw(_DIGITS9)
    sep = draw(st.sampled_from(["", " ", ".", "-"]))
    groups = draw(st.sampled_from([(9,), (3, 3, 3), (2, 3, 4), (3, 2, 2, 2)]))
    parts, at = [], 0
    for size in groups:
        parts.append(digits[at : at + size])
        at += size
    body = sep.join(parts)
    after_prefix = draw(st.sampled_from(["", sep])) if prefix != "0" else ""
    return prefix + after_prefix + body


_PERSONAL = st.one_of(st.from_regex(r"\A[0-9]{12}\Z"), _DIGITS9, _phones())


@settings(max_examples=300, deadline=None)
@given(
    number=_PERSONAL,
    key=_NON_AMOUNT_KEYS,
    before=st.text(max_size=20),
    after=st.text(max_size=20),
    left=_SEPARATORS,
    right=_SEPARATORS,
    shape=st.sampled_from(["flat", "dict", "list", "exception"]),
)
def test_no_personal_number_survives_rendering(
    number: str, key: str, before: str, after: str, left: str, right: str, shape: str
) -> None:
    digits = "".join(ch for ch in number if ch.isdigit())
    assume(number not in before and number not in after)
    assume(digits not in before and digits not in after)
    text = f"{before}{left}{number}{right}{after}"
    value: Any = {
        "flat": text,
        "dict": {"inner": {key: text}},
        "list": ["x", [text]],
        "exception": RuntimeError(text),
    }[shape]
    output = render(**{key: value})
    assert number not in output
    assert digits not in output
    assert "*" in output


def test_a_closed_stream_never_fails_the_caller() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    stream.close()
    structlog.get_logger("test").error("lost", phone=PHONE)  # no ValueError


def test_standard_error_is_looked_up_at_each_line(monkeypatch: pytest.MonkeyPatch) -> None:
    configure_logging(json=True)
    later = io.StringIO()
    monkeypatch.setattr("sys.stderr", later)
    structlog.get_logger("test").warning("here")
    assert json.loads(later.getvalue())["event"] == "here"


_PIECES = st.sampled_from(
    [
        "0",
        "1",
        "9",
        "84",
        "+84",
        " ",
        ".",
        "-",
        "_",
        "=",
        ":",
        "'",
        '"',
        "&",
        "/",
        "@",
        "secret",
        "Token",
        "signature",
        "whsec_",
        "Bearer ",
        "basic ",
        "api-key",
        "passw",
        "https://",
        "u:p@",
        "-----BEGIN PRIVATE KEY-----",
        "PH",
        "pay_",
        "A",
        "z",
        "é",
        "001090001234",
        "0912 345 678",
        "123456789",
        "20261128143000",
        VNPAY_SECRET,
    ]
)


@settings(max_examples=400)
@given(pieces=st.lists(_PIECES, max_size=24))
def test_the_one_pass_precheck_never_changes_what_is_masked(pieces: list[str]) -> None:
    """``mask_text`` skips the full rules for text none of them can touch: same result."""
    from payhub.observability.logging import _mask_text_fully

    register_secret(VNPAY_SECRET)
    text = "".join(pieces)
    assert mask_text(text) == _mask_text_fully(text)


def test_safe_text_is_returned_as_is_and_unsafe_text_still_masked() -> None:
    line = "POST /v1/payments 201 req_01kbxyz 12.5 ms portal=demo"
    assert mask_text(line) is line
    assert mask_text(f"payer {ID_NUMBER} called") == "payer *********234 called"
