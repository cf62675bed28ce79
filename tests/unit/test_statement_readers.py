"""Statement readers: values as the bank wrote them, and every bad line named."""

from __future__ import annotations

import io
from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payhub.domain.clock import VIETNAM
from payhub.errors import ConfigError, StatementError
from payhub.reconcile.csv_reader import read_momo, read_vnpay
from payhub.reconcile.entries import StatementEntry, whole_vnd
from payhub.reconcile.formats import reader_for, register_reader, usual_format
from payhub.reconcile.mt940_reader import read_mt940

VNPAY = (
    "vnp_TransactionNo,vnp_TxnRef,amount,status,pay_date,fee\n"
    "14000001,PH7K2M9Q4XAB,2550000,00,20261127101500,5500\n"
    "14000002,PH8K2M9Q4XAB,150000.00,02,20261127235959,0\n"
)
MT940 = (
    ":20:STMT20261127\n:25:970400/0123456789\n:28C:00001/001\n:60F:C261126VND0,\n"
    ":61:2611271127C2550000,NTRFPH7K2M9Q4XAB//FT001\n:86:Thanh toan ho so\n"
    ":61:2611271127D150000,NTRFNONREF//FT002\n:86:phi\n"
    ":62F:C261127VND2400000,\n"
)


def test_vnpay_csv_values() -> None:
    first, second = read_vnpay(io.BytesIO(VNPAY.encode()))
    assert first == StatementEntry(
        2, "PH7K2M9Q4XAB", 2_550_000, True,
        datetime(2026, 11, 27, 10, 15, tzinfo=VIETNAM), "14000001", "", 5500,
    )  # fmt: skip
    assert second.amount == 150_000 and second.settled is False and second.line == 3


def test_momo_csv_settled_code_is_zero() -> None:
    text = VNPAY.replace("vnp_TransactionNo", "transId").replace("vnp_TxnRef", "orderId")
    text = text.replace("status", "resultCode").replace(",00,", ",0,")
    (first, second) = read_momo(io.BytesIO(text.encode()))
    assert first.settled and not second.settled


def test_a_byte_order_mark_and_crlf_are_fine() -> None:
    data = b"\xef\xbb\xbf" + VNPAY.replace("\n", "\r\n").encode()
    assert [e.reference for e in read_vnpay(io.BytesIO(data))] == ["PH7K2M9Q4XAB", "PH8K2M9Q4XAB"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (VNPAY.encode()[:-30], "line 3: 3 cells"),
        (VNPAY.replace("2550000", "2550000.5").encode(), "line 2: amount 2550000.5 has a fraction"),
        (VNPAY.replace("2550000", "-2550000").encode(), "line 2: amount -2550000 is negative"),
        (VNPAY.replace("2550000", "2,550,000").encode(), "line 2: 8 cells"),
        (VNPAY.replace("20261127101500", "2026-11-27").encode(), "line 2: pay_date"),
        (VNPAY.replace(",00,", ",OK,").encode(), "line 2: status 'OK'"),
        (
            VNPAY.encode() + "x,Phạm,1,00,20261127000000,0\n".encode("utf-16-le"),
            "line 4: not UTF-8",
        ),
        (VNPAY.replace("PH7K2M9Q4XAB", "").encode(), "line 2: empty vnp_TxnRef"),
        (VNPAY.replace(",5500", ',"5500').encode(), "line"),
    ],
)
def test_bad_csv_lines_are_named(data: bytes, message: str) -> None:
    with pytest.raises(StatementError, match=message):
        list(read_vnpay(io.BytesIO(data)))


def test_mt940_through_the_library() -> None:
    credit, debit = read_mt940(io.BytesIO(MT940.encode()))
    assert credit.reference == "PH7K2M9Q4XAB" and credit.amount == 2_550_000 and credit.settled
    assert credit.line == 5 and credit.bank_transaction_id == "FT001"
    assert credit.text == "Thanh toan ho so"
    assert debit.reference is None and not debit.settled and debit.line == 7


def test_mt940_in_bounded_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    from payhub.reconcile import mt940_reader

    monkeypatch.setattr(mt940_reader, "BATCH", 1)
    assert [e.line for e in read_mt940(io.BytesIO(MT940.encode()))] == [5, 7]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MT940.replace("C2550000,", "C2550000,50"), "line 5: amount 2550000.50 has a fraction"),
        (MT940.replace("VND", "USD"), "currency 'USD'"),
        ("", "empty"),
        (MT940.replace(":20:STMT20261127\n", ""), "before any :20:"),
    ],
)
def test_bad_mt940(text: str, message: str) -> None:
    with pytest.raises(StatementError, match=message):
        list(read_mt940(io.BytesIO(text.encode())))


@given(st.integers(min_value=0, max_value=10**15), st.sampled_from(["", ".0", ".00", ".000"]))
def test_whole_vnd_accepts_whole_amounts(amount: int, zeros: str) -> None:
    assert whole_vnd(f"{amount}{zeros}", line=1) == amount


@given(st.decimals(min_value=0, max_value=10**12, places=2, allow_nan=False, allow_infinity=False))
def test_whole_vnd_refuses_fractions(amount: Decimal) -> None:
    if amount == amount.to_integral_value():
        assert whole_vnd(str(amount), line=7) == int(amount)
    else:
        with pytest.raises(StatementError, match="line 7"):
            whole_vnd(str(amount), line=7)


def test_formats_registry() -> None:
    assert reader_for("mt940") is read_mt940
    assert usual_format("vnpay") == "vnpay-csv" and usual_format("vietqr") == "camt.053"
    with pytest.raises(ConfigError, match="unknown statement format"):
        reader_for("camt.099")
    register_reader("test-format", read_vnpay)
    assert reader_for("test-format") is read_vnpay


CAMT053_V2 = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
 <BkToCstmrStmt>
  <GrpHdr><MsgId>S1</MsgId><CreDtTm>2026-11-27T23:59:00</CreDtTm></GrpHdr>
  <Stmt>
   <Id>S1</Id><CreDtTm>2026-11-27T23:59:00</CreDtTm>
   <Acct><Id><Othr><Id>257678859</Id></Othr></Id><Ccy>VND</Ccy></Acct>
   <Ntry>
    <Amt Ccy="VND">2550000</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
    <BookgDt><DtTm>2026-11-27T09:00:00</DtTm></BookgDt>
    <AcctSvcrRef>FT1</AcctSvcrRef>
    <NtryDtls><TxDtls><Refs><AcctSvcrRef>FT1</AcctSvcrRef></Refs>
     <RmtInf><Ustrd>MBVCB.1234567.CT {reference}</Ustrd></RmtInf></TxDtls></NtryDtls>
   </Ntry>
   <Ntry>
    <Amt Ccy="VND">11000</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts>
    <BookgDt><Dt>2026-11-27</Dt></BookgDt>
    <NtryDtls><TxDtls><RmtInf><Ustrd>phi</Ustrd></RmtInf></TxDtls></NtryDtls>
   </Ntry>
   <Ntry>
    <Amt Ccy="VND">150000</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>PDNG</Sts>
    <BookgDt><Dt>2026-11-27</Dt></BookgDt>
    <NtryDtls><TxDtls><RmtInf><Ustrd>pending</Ustrd></RmtInf></TxDtls></NtryDtls>
   </Ntry>
  </Stmt>
 </BkToCstmrStmt>
</Document>
"""


def test_camt_credits_become_entries_and_debits_are_skipped() -> None:
    """The camt.053 adapter over the real streaming reader: credits only, BOOK settles."""
    from payhub.domain.reference import new_bank_reference
    from payhub.reconcile.camt_entries import read_camt053

    reference = new_bank_reference()
    document = CAMT053_V2.replace("{reference}", reference.lower())  # apps change the case
    first, second = read_camt053(io.BytesIO(document.encode()))
    assert first.reference == reference
    assert (first.amount, first.settled, first.bank_transaction_id) == (2_550_000, True, "FT1")
    assert first.booked_at == datetime(2026, 11, 27, 9, 0, tzinfo=VIETNAM)
    assert second.reference is None and second.amount == 150_000 and not second.settled
