"""Statement readers: values as the bank wrote them, and every bad line named."""

from __future__ import annotations

import io
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payhub.domain.clock import VIETNAM
from payhub.errors import ConfigError, StatementError
from payhub.reconcile.csv_reader import read_momo, read_vnpay
from payhub.reconcile.entries import BankAccount, ByteSource, StatementEntry, whole_vnd
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


def test_a_bank_reads_its_statement_through_the_port_with_its_own_reader() -> None:
    """A third-party bank names a registered format; one without a statement says so."""
    from tests.fakes import FakeBank

    def read_lines(stream: ByteSource, *, account: BankAccount | None = None) -> Any:
        assert account is None  # FakeBank names no statement account
        for number, text in enumerate(stream.read().decode().splitlines(), start=1):
            yield StatementEntry(number, text, 1_000, True, None)

    class StatementBank(FakeBank):
        statement_format = "test-lines"

    register_reader("test-lines", read_lines)
    bank = StatementBank("fake")
    assert [e.reference for e in bank.read_statement(io.BytesIO(b"PH1\nPH2"))] == ["PH1", "PH2"]
    with pytest.raises(StatementError, match="sends no statement"):
        FakeBank("fake").read_statement(io.BytesIO(b""))


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


# -- the account a statement is for ------------------------------------------------------------

VIETQR = BankAccount("vietqr", "0123456789")
TERMINAL = BankAccount("vnpay", "PAYHUB01")


def test_an_account_matches_whatever_its_spacing_case_or_bank_code() -> None:
    assert BankAccount("b", "VN12 3456 7890").matches("vn1234567890")
    assert VIETQR.matches("970400/0123456789") and VIETQR.matches(" 0123456789 ")
    assert not VIETQR.matches("01234567890") and not VIETQR.matches("0123456789/970400")
    assert not VIETQR.matches("")


def with_merchant(text: str, column: str, merchants: tuple[str, ...]) -> str:
    header, *rows = text.splitlines()
    lines = [f"{header},{column}", *(f"{r},{m}" for r, m in zip(rows, merchants, strict=True))]
    return "\n".join(lines) + "\n"


def test_a_csv_naming_the_banks_merchant_on_every_line_is_read() -> None:
    data = with_merchant(VNPAY, "vnp_TmnCode", ("PAYHUB01", "PAYHUB01")).encode()
    assert [e.line for e in read_vnpay(io.BytesIO(data), TERMINAL)] == [2, 3]
    momo = VNPAY.replace("vnp_TransactionNo", "transId").replace("vnp_TxnRef", "orderId")
    momo = with_merchant(momo.replace("status", "resultCode"), "partnerCode", ("MOMOX", "MOMOX"))
    assert len(list(read_momo(io.BytesIO(momo.encode()), BankAccount("momo", "MOMOX")))) == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            with_merchant(VNPAY, "vnp_TmnCode", ("PAYHUB01", "OTHER002")),
            "VNPay statement line 3: statement is for account OTHER002, bank vnpay collects "
            "into PAYHUB01",
        ),
        (
            with_merchant(VNPAY, "vnp_TmnCode", ("OTHER002", "PAYHUB01")),
            "line 2: statement is for account OTHER002",
        ),
        (
            with_merchant(VNPAY, "vnp_TmnCode", ("PAYHUB01", "")),
            "line 3: the statement names no account; bank vnpay collects into PAYHUB01",
        ),
        (VNPAY, r"line 1 \(no vnp_TmnCode column\): the statement names no account"),
        (
            with_merchant(VNPAY, "partnerCode", ("PAYHUB01", "PAYHUB01")),
            r"line 1 \(no vnp_TmnCode column\)",
        ),
    ],
)
def test_a_csv_for_another_merchant_is_refused_at_its_line(data: str, message: str) -> None:
    with pytest.raises(StatementError, match=message):
        list(read_vnpay(io.BytesIO(data.encode()), TERMINAL))


def test_without_an_account_the_merchant_column_is_optional() -> None:
    data = with_merchant(VNPAY, "vnp_TmnCode", ("ANYONE01", "OTHER002")).encode()
    assert len(list(read_vnpay(io.BytesIO(data)))) == 2
    assert len(list(read_vnpay(io.BytesIO(VNPAY.encode())))) == 2


def test_mt940_for_the_banks_account_is_read() -> None:
    assert [e.line for e in read_mt940(io.BytesIO(MT940.encode()), VIETQR)] == [5, 7]
    text = MT940.replace(":25:970400/0123456789", ":25P:0123456789\nBKTRVNVX")
    assert len(list(read_mt940(io.BytesIO(text.encode()), VIETQR))) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            MT940.replace("0123456789", "9999999999"),
            "MT940 line 2: statement is for account 970400/9999999999, bank vietqr collects "
            "into 0123456789",
        ),
        (MT940.replace(":25:970400/0123456789\n", ""), "MT940 line 1: the statement names no"),
        (  # the second statement of the file, without entries, is another account's
            MT940 + ":20:STMT2\n:25:970400/1111\n:28C:2/1\n:60F:C261127VND0,\n:62F:C261127VND0,\n",
            "MT940 line 11: statement is for account 970400/1111",
        ),
        (  # ... or names none
            MT940 + ":20:STMT2\n:28C:2/1\n:60F:C261127VND0,\n:62F:C261127VND0,\n",
            "MT940 line 10: the statement names no account",
        ),
    ],
)
def test_mt940_for_another_account_is_refused(text: str, message: str) -> None:
    with pytest.raises(StatementError, match=message):
        list(read_mt940(io.BytesIO(text.encode()), VIETQR))


def test_camt_for_the_banks_account_is_read() -> None:
    from payhub.reconcile.camt_entries import read_camt053

    document = CAMT053_V2.replace("{reference}", "x")
    entries = read_camt053(io.BytesIO(document.encode()), BankAccount("vietqr", "257678859"))
    assert len(list(entries)) == 2


CAMT_WITHOUT_ENTRIES = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
 <BkToCstmrStmt>
  <GrpHdr><MsgId>S2</MsgId><CreDtTm>2026-11-27T23:59:00</CreDtTm></GrpHdr>
  <Stmt><Id>S2</Id><Acct><Id><IBAN>VN00 1111 2222</IBAN></Id></Acct></Stmt>
 </BkToCstmrStmt>
</Document>
"""


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            CAMT053_V2,
            "camt line 5, Stmt/Acct/Id: statement is for account 257678859, bank vietqr "
            "collects into 0123456789",
        ),
        (
            CAMT053_V2.replace(
                "<Acct><Id><Othr><Id>257678859</Id></Othr></Id><Ccy>VND</Ccy></Acct>", ""
            ),
            "camt line 5, Stmt/Acct/Id: the statement names no account",
        ),
        (  # no entry to read: the account is checked when the statement ends
            CAMT_WITHOUT_ENTRIES,
            "camt line 5, Stmt/Acct/Id: statement is for account VN00 1111 2222",
        ),
        (
            CAMT_WITHOUT_ENTRIES.replace(
                "<Stmt><Id>S2</Id><Acct><Id><IBAN>VN00 1111 2222</IBAN></Id></Acct></Stmt>", ""
            ),
            "camt: the statement names no account",
        ),
    ],
)
def test_camt_for_another_account_is_refused(document: str, message: str) -> None:
    from payhub.reconcile.camt_entries import read_camt053

    with pytest.raises(StatementError, match=message):
        list(read_camt053(io.BytesIO(document.encode()), VIETQR))


def test_each_connector_names_the_account_of_its_statements() -> None:
    from payhub.reconcile.formats import bank_account
    from payhub.settings import BankSettings

    options = {"tmn_code": "PAYHUB01", "partner_code": "MOMOX", "account": "0123456789"}
    found = {
        protocol: bank_account(BankSettings(f"my-{protocol}", protocol, options))
        for protocol in ("vnpay", "momo", "vietqr")
    }
    assert found == {
        "vnpay": BankAccount("my-vnpay", "PAYHUB01"),
        "momo": BankAccount("my-momo", "MOMOX"),
        "vietqr": BankAccount("my-vietqr", "0123456789"),
    }
    assert bank_account(BankSettings("x", "vnpay", {})) is None


def test_a_reader_for_an_account_checks_it() -> None:
    data = with_merchant(VNPAY, "vnp_TmnCode", ("OTHER002", "OTHER002")).encode()
    assert len(list(reader_for("vnpay-csv")(io.BytesIO(data)))) == 2
    with pytest.raises(StatementError, match="line 2: statement is for account OTHER002"):
        list(reader_for("vnpay-csv", TERMINAL)(io.BytesIO(data)))
