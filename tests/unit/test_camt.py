"""ISO 20022 camt reader: real samples, every version's shapes, VND, untrusted and bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from payhub.domain.clock import VIETNAM
from payhub.domain.reference import new_bank_reference
from payhub.errors import StatementError
from payhub.reconcile.camt import (
    CamtError,
    CamtLine,
    CamtReader,
    CreditDebit,
    read_camt,
    to_statement_line,
    vnd_amount,
)

SAMPLES = Path("/work/shared/data/camt-genkgo")
_EXPONENT = {"JPY": 0, "VND": 0}
"""ISO 4217 minor-unit exponents that are not 2, for the samples' signed minor units."""


def _minor(amount: Decimal, currency: str) -> int:
    value = amount.scaleb(_EXPONENT.get(currency, 2))
    assert value == value.to_integral_value(), (amount, currency)
    return int(value)


def _sample_pairs() -> list[Path]:
    if not SAMPLES.exists():
        return []
    return sorted(SAMPLES.glob("*.xml"))


def _resolve(items: list[Any], first: Any) -> list[Any]:
    """The JSON dump writes the list's first item as ``__RECURSIVITY__`` (same as ``first``)."""
    return [first if item == "__RECURSIVITY__" else item for item in items]


def _instant(value: dict[str, str] | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value["0"])


def _check_date(expected: dict[str, str] | None, day: date | None, moment: datetime | None) -> None:
    instant = _instant(expected)
    if instant is None:
        assert day is None and moment is None
    elif moment is not None:
        assert moment == instant
    else:
        assert day == instant.date()


@pytest.mark.parametrize("sample", _sample_pairs(), ids=lambda p: p.name)
def test_real_sample_parses_to_the_values_of_its_json(sample: Path) -> None:
    expected = json.loads(sample.with_suffix(".json").read_text())
    # The samples' library reads a DtTm without offset as UTC; the hub's default is Vietnam.
    reader = CamtReader(sample, local_timezone=UTC)
    lines = list(reader)

    # The dump writes an object met before as "__RECURSIVITY__": records appear in full
    # either in getRecords or as an entry's getRecord, and getEntries lists the entries of
    # the statements the dump reached (per statement, getIndex counts from 0).
    records = [r for r in expected["getRecords"] if isinstance(r, dict)]
    records += [e["getRecord"] for e in expected["getEntries"] if isinstance(e["getRecord"], dict)]
    assert len(reader.statements) == len(expected["getRecords"])
    by_id = {statement.statement_id: statement for statement in reader.statements}
    for record in records:
        statement = by_id[record["getId"]]
        assert statement.account == record["getAccount"]["getIdentification"]
        assert statement.created_at == _instant(record["getCreatedOn"])
        assert statement.message_id == expected["getGroupHeader"]["getMessageId"]

    for entry in expected["getEntries"]:
        record = entry["getRecord"]
        statement_id = record["getId"] if isinstance(record, dict) else records[0]["getId"]
        in_statement = [line for line in lines if line.statement.statement_id == statement_id]
        entry_indexes = sorted({line.entry_index for line in in_statement})
        wanted = entry_indexes[entry["getIndex"]]
        mine = [line for line in in_statement if line.entry_index == wanted]
        first = mine[0]
        money = entry["getAmount"]
        sign = 1 if first.direction is CreditDebit.CREDIT else -1
        assert first.direction == entry["getCreditDebitIndicator"]
        assert first.entry_currency == money["getCurrency"]["getCode"]
        assert sign * _minor(first.entry_amount, first.entry_currency) == int(money["getAmount"])
        assert first.entry_amount >= 0
        assert first.status == entry["getStatus"]
        assert first.reversal == entry["getReversalIndicator"]
        assert first.account_servicer_reference == entry["getAccountServicerReference"]
        _check_date(entry["getBookingDate"], first.booking_date, first.booked_at)
        _check_date(entry["getValueDate"], first.value_date, None)

        details = _resolve(entry["getTransactionDetails"], entry["getTransactionDetail"])
        assert len(mine) == max(1, len(details))
        assert all(line.transaction_count == len(details) for line in mine)
        for line, detail in zip(mine, details, strict=False):
            reference = detail["getReference"] or {}
            assert line.end_to_end_id == reference.get("getEndToEndId")
            assert line.transaction_account_servicer_reference == reference.get(
                "getAccountServicerReference"
            )
            assert line.uetr == reference.get("getUuidEndToEndReference")
            remittance = detail["getRemittanceInformation"]
            texts: list[str] = []
            if remittance is not None:
                blocks = _resolve(
                    remittance["getUnstructuredBlocks"], remittance["getUnstructuredBlock"]
                )
                texts = [block["getMessage"] for block in blocks]
            assert list(line.remittance) == texts
            tx_money = detail["getAmount"]
            if tx_money is not None:
                # The library signs a transaction's amount with the entry's indicator.
                assert line.amount is not None
                assert _minor(line.amount, line.currency) == abs(int(tx_money["getAmount"]))
                assert line.currency == tx_money["getCurrency"]["getCode"]
            elif len(details) == 1:
                assert line.amount == line.entry_amount
            else:
                assert line.amount is None  # a batch without per-transaction amounts


def test_the_samples_cover_what_the_reader_must_handle() -> None:
    """Guard against a silently shrunken data set: versions, both kinds, batches, UETR."""
    samples = _sample_pairs()
    if not samples:
        pytest.skip("shared camt samples not present on this machine")
    readers = {path.name: CamtReader(path) for path in samples}
    lines = {name: list(reader) for name, reader in readers.items()}
    assert {r.version for r in readers.values()} >= {"001.02", "001.04", "001.08"}
    assert {r.kind for r in readers.values()} == {"camt.053", "camt.054"}
    assert any(line.transaction_count > 1 for ls in lines.values() for line in ls)
    assert any(line.uetr for ls in lines.values() for line in ls)
    assert any(len(line.remittance) > 1 for ls in lines.values() for line in ls)


def test_nine_fractional_digits_without_offset_are_vietnam_time_by_default() -> None:
    reader = CamtReader(SAMPLES / "camt53.only-Dt-with-DtTm.xml")
    assert list(reader) == []
    (statement,) = reader.statements
    assert statement.created_at == datetime(2025, 7, 24, 6, 10, 29, tzinfo=VIETNAM)


# ------------------------------------------------------------------ synthetic documents


def _entry(
    amount: str = "10000",
    *,
    ccy: str = "VND",
    cdi: str = "CRDT",
    status: str = "BOOK",
    status_shape: str = "plain",
    booking: str = "<Dt>2026-11-28</Dt>",
    details: str = "",
    extra: str = "",
) -> str:
    if status_shape == "plain":
        sts = f"<Sts>{status}</Sts>"
    elif status_shape == "code":
        sts = f"<Sts><Cd>{status}</Cd></Sts>"
    else:
        sts = f"<Sts><Prtry>{status}</Prtry></Sts>"
    return (
        f'<Ntry><Amt Ccy="{ccy}">{amount}</Amt><CdtDbtInd>{cdi}</CdtDbtInd>{sts}'
        f"<BookgDt>{booking}</BookgDt><ValDt><Dt>2026-11-28</Dt></ValDt>"
        f"<AcctSvcrRef>BANKREF-{amount}</AcctSvcrRef>{extra}"
        f"{f'<NtryDtls>{details}</NtryDtls>' if details else ''}</Ntry>"
    )


def _tx(
    ustrd: tuple[str, ...] = (),
    *,
    e2e: str | None = None,
    amount: str | None = None,
    v02_amount: bool = False,
    uetr: str | None = None,
) -> str:
    refs = ""
    if e2e or uetr:
        refs = "<Refs>"
        refs += f"<AcctSvcrRef>TX-{e2e}</AcctSvcrRef>" if e2e else ""
        refs += f"<EndToEndId>{e2e}</EndToEndId>" if e2e else ""
        refs += f"<UETR>{uetr}</UETR>" if uetr else ""
        refs += "</Refs>"
    money = ""
    if amount is not None:
        money = (
            f'<AmtDtls><TxAmt><Amt Ccy="VND">{amount}</Amt></TxAmt></AmtDtls>'
            if v02_amount
            else f'<Amt Ccy="VND">{amount}</Amt>'
        )
    remittance = ""
    if ustrd:
        remittance = "<RmtInf>" + "".join(f"<Ustrd>{u}</Ustrd>" for u in ustrd) + "</RmtInf>"
    return f"<TxDtls>{refs}{money}{remittance}</TxDtls>"


def _document(
    entries: str, *, kind: str = "053", version: str = "08", namespace: bool = True
) -> bytes:
    message, record = (
        ("BkToCstmrStmt", "Stmt") if kind == "053" else ("BkToCstmrDbtCdtNtfctn", "Ntfctn")
    )
    xmlns = (
        f' xmlns="urn:iso:std:iso:20022:tech:xsd:camt.{kind}.001.{version}"' if namespace else ""
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Document{xmlns}>\n<{message}>\n'
        f"<GrpHdr><MsgId>MSG-1</MsgId><CreDtTm>2026-11-28T23:59:00+07:00</CreDtTm></GrpHdr>\n"
        f"<{record}><Id>STMT-1</Id><CreDtTm>2026-11-28T23:59:00.123456789</CreDtTm>"
        f"<Acct><Id><Othr><Id>0011004567890</Id></Othr></Id><Ccy>VND</Ccy></Acct>\n"
        f"{entries}\n</{record}>\n</{message}>\n</Document>\n"
    ).encode()


@pytest.mark.parametrize("version", ["02", "04", "06", "08", "10", "13"])
@pytest.mark.parametrize("kind", ["053", "054"])
def test_every_version_reads_the_same(version: str, kind: str) -> None:
    shape = "plain" if version in ("02", "04", "06") else "code"
    body = _entry(
        "2550000",
        status_shape=shape,
        details=_tx(("PH7K3QX9MZ2F",), e2e="E2E-1", amount="2550000", v02_amount=version == "02"),
    )
    reader = CamtReader(_document(body, kind=kind, version=version))
    (line,) = list(reader)
    assert reader.kind == f"camt.{kind}"
    assert reader.version == f"001.{version}"
    assert (line.amount, line.currency, line.direction, line.status) == (
        Decimal("2550000"),
        "VND",
        CreditDebit.CREDIT,
        "BOOK",
    )
    assert line.booked
    assert line.end_to_end_id == "E2E-1"
    assert line.transaction_account_servicer_reference == "TX-E2E-1"
    assert line.account_servicer_reference == "BANKREF-2550000"
    assert line.remittance == ("PH7K3QX9MZ2F",)
    assert line.statement.account == "0011004567890"
    assert line.statement.statement_id == "STMT-1"
    assert line.statement.message_id == "MSG-1"


def test_a_document_without_namespace_is_read_by_its_message() -> None:
    reader = CamtReader(_document(_entry(), kind="054", namespace=False))
    assert len(list(reader)) == 1
    assert (reader.kind, reader.version) == ("camt.054", None)


@pytest.mark.parametrize(
    ("status", "shape", "booked"),
    [
        ("BOOK", "plain", True),
        ("BOOK", "code", True),
        ("PDNG", "plain", False),
        ("PDNG", "code", False),
        ("INFO", "code", False),
        ("BOOK", "prtry", False),
    ],
)
def test_only_the_iso_code_book_is_booked(status: str, shape: str, booked: bool) -> None:
    (line,) = read_camt(_document(_entry(status=status, status_shape=shape)))
    assert line.status == status
    assert line.booked is booked
    assert line.status_proprietary is (shape == "prtry")


def test_a_batch_gives_one_line_per_transaction_with_repeated_ustrd() -> None:
    a, b = new_bank_reference(), new_bank_reference()
    details = _tx(("MBVCB.1234567.", f"{a.lower()}.CT tu 0123"), e2e="E1", amount="100000") + _tx(
        (f"IBFT {b}",), e2e="E2", amount="250000", uetr="255ae394-9965-4438-ac86-f406feada396"
    )
    lines = list(read_camt(_document(_entry("350000", details=details), kind="054")))
    assert [line.transaction_index for line in lines] == [0, 1]
    assert [line.amount for line in lines] == [Decimal(100000), Decimal(250000)]
    assert all(line.entry_amount == Decimal(350000) for line in lines)
    assert lines[0].remittance == ("MBVCB.1234567.", f"{a.lower()}.CT tu 0123")
    assert lines[1].uetr == "255ae394-9965-4438-ac86-f406feada396"
    statement_lines = [to_statement_line(line) for line in lines]
    assert [s.bank_reference for s in statement_lines] == [a, b]
    assert [s.amount for s in statement_lines] == [100000, 250000]
    assert statement_lines[0].bank_transaction_id == "TX-E1"


def test_a_reference_wrapped_across_two_ustrd_is_found() -> None:
    reference = new_bank_reference()
    details = _tx((f"Thanh toan ho so {reference[:5]}", reference[5:]), amount="150000")
    (line,) = read_camt(_document(_entry("150000", details=details), kind="054"))
    assert to_statement_line(line).bank_reference == reference


def test_dates_and_date_times() -> None:
    entries = (
        _entry("1", booking="<DtTm>2026-11-28T23:30:00.123456789</DtTm>")
        + _entry("2", booking="<DtTm>2026-11-28T17:30:00Z</DtTm>")
        + _entry("3", booking="<DtTm>2026-11-28T16:59:59-01:00</DtTm>")
        + _entry("4", booking="<Dt>2026-11-28</Dt>")
    )
    one, two, three, four = read_camt(_document(entries))
    assert one.booked_at == datetime(2026, 11, 28, 23, 30, 0, 123456, tzinfo=VIETNAM)
    assert one.booking_date == date(2026, 11, 28)
    # 17:30 UTC is 00:30 the next day in Vietnam: the business day is the 29th.
    assert two.booked_at == datetime(2026, 11, 28, 17, 30, tzinfo=UTC)
    assert two.booking_date == date(2026, 11, 29)
    assert three.booked_at == datetime(
        2026, 11, 28, 16, 59, 59, tzinfo=timezone(-timedelta(hours=1))
    )
    assert three.booking_date == date(2026, 11, 29)
    assert four.booked_at is None and four.booking_date == date(2026, 11, 28)
    assert to_statement_line(four).booked_at == datetime(2026, 11, 28, tzinfo=VIETNAM)


def test_amounts_are_decimal_and_vnd_is_whole() -> None:
    entries = _entry("10000.00") + _entry("12.5", ccy="EUR") + _entry("10000.50")
    whole, euro, fraction = read_camt(_document(entries))
    assert vnd_amount(whole) == 10000
    assert (euro.amount, euro.currency) == (Decimal("12.5"), "EUR")
    with pytest.raises(CamtError, match=r"line \d+, Ntry/Amt: currency EUR where VND"):
        vnd_amount(euro)
    with pytest.raises(CamtError, match=r"line \d+, Ntry/Amt: VND amount with a fraction"):
        vnd_amount(fraction)


def test_a_batched_transaction_without_amount_has_no_vnd_amount() -> None:
    (first, _) = read_camt(_document(_entry("2", details=_tx(("a",)) + _tx(("b",)))))
    assert first.amount is None
    with pytest.raises(CamtError, match="without its own amount"):
        vnd_amount(first)


def test_a_debit_is_no_payment_received() -> None:
    (line,) = read_camt(_document(_entry(cdi="DBIT")))
    assert line.direction is CreditDebit.DEBIT
    with pytest.raises(CamtError, match="debit"):
        to_statement_line(line)


def test_lines_are_produced_lazily() -> None:
    """A caller that stops after the first line has not parsed the rest (nor its errors)."""
    document = _document(_entry("1") + _entry("-2"))
    lines = read_camt(document)
    assert next(lines).amount == Decimal(1)
    with pytest.raises(CamtError, match="negative"):
        next(lines)


# ------------------------------------------------------------------ bad input

_GOOD = _document(_entry("10000", details=_tx(("PH7K3QX9MZ2F",), e2e="E2E")))


def _error(source: bytes, **options: Any) -> CamtError:
    with pytest.raises(CamtError) as caught:
        list(read_camt(source, **options))
    assert isinstance(caught.value, StatementError)
    return caught.value


def test_truncated_file_names_the_line() -> None:
    error = _error(_GOOD[: len(_GOOD) // 2])
    assert "not well-formed XML" in str(error)
    assert error.line is not None and f"line {error.line}" in str(error)


def test_malformed_xml_names_the_line() -> None:
    error = _error(b'<?xml version="1.0"?>\n<Document>\n<BkToCstmrStmt>\n</Stmt>\n</Document>')
    assert error.line == 4
    assert "camt line 4" in str(error)


@pytest.mark.parametrize(
    "prolog",
    [
        "<!DOCTYPE Document>",
        '<!DOCTYPE Document [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;'
        '&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;'
        '&c;&c;&c;&c;">]>',
        '<!DOCTYPE Document [<!ENTITY secret SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE Document SYSTEM "http://127.0.0.1:9/evil.dtd">',
        '<!DOCTYPE Document [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd"> %remote;]>',
    ],
    ids=["plain", "entity-bomb", "external-entity", "external-dtd", "parameter-entity"],
)
def test_any_doctype_is_refused(prolog: str) -> None:
    body = _GOOD.decode().replace("PH7K3QX9MZ2F", "&d;&secret;")
    document = body.replace("?>\n", f"?>\n{prolog}\n", 1).encode()
    error = _error(document)
    assert "DOCTYPE refused" in str(error) or "not well-formed" in str(error)
    assert "root:" not in str(error)


def test_doctype_refusal_is_the_reason_for_a_well_formed_bomb() -> None:
    document = _GOOD.replace(b"?>\n", b'?>\n<!DOCTYPE Document [<!ENTITY a "x">]>\n', 1).replace(
        b"PH7K3QX9MZ2F", b"&a;"
    )
    assert "DOCTYPE refused" in str(_error(document))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            _GOOD.replace(b"PH7K3QX9MZ2F", "Phí học".encode("latin-1", "replace")),
            "not well-formed XML",
        ),
        (_GOOD.decode().encode("utf-16"), "UTF-16"),
        (_GOOD.replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"'), "ISO-8859-1"),
    ],
    ids=["latin-bytes-declared-utf8", "utf-16", "declared-latin1"],
)
def test_wrong_encoding_is_refused(data: bytes, message: str) -> None:
    error = _error(data)
    assert message in str(error)
    assert error.line is not None


def test_utf8_with_byte_order_mark_is_fine() -> None:
    assert len(list(read_camt(b"\xef\xbb\xbf" + _GOOD))) == 1


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (_entry("-10000"), "Ntry/Amt: negative amount '-10000'"),
        (_entry("10,000"), "Ntry/Amt: amount '10,000' is not a decimal amount"),
        (_entry("1e5"), "is not a decimal amount"),
        (_entry("10000", ccy="vn"), "Ntry/Amt: currency 'vn' is not an ISO 4217 code"),
        (_entry("10000", cdi="CRED"), "CdtDbtInd 'CRED'"),
        (_entry("1", booking="<Dt>2026-13-01</Dt>"), "Ntry/BookgDt: date '2026-13-01'"),
        (_entry("1", booking="<DtTm>2026-11-28 10:00</DtTm>"), "Ntry/BookgDt: date-time"),
        (_entry("1", booking=""), "neither Dt nor DtTm"),
        (_entry("1").replace("<Sts>BOOK</Sts>", ""), "Ntry: Sts missing"),
        (_entry("1").replace("<CdtDbtInd>CRDT</CdtDbtInd>", ""), "Ntry: CdtDbtInd missing"),
        (_entry("1").replace('<Amt Ccy="VND">1</Amt>', ""), "Ntry: Amt missing"),
        (_entry("1", details=_tx(amount="-5")), "TxDtls/Amt: negative amount"),
    ],
)
def test_bad_values_name_the_line_and_element(entry: str, message: str) -> None:
    error = _error(_document(_entry("1") + "\n" + entry))
    assert message in str(error)
    assert error.line == 7  # the second entry's line in _document
    assert str(error).startswith("camt line 7, ")


def test_unknown_currency_where_vnd_is_required() -> None:
    (line,) = read_camt(_document(_entry("10000", ccy="XYZ")))
    with pytest.raises(CamtError, match="currency XYZ where VND is required"):
        to_statement_line(line)


@pytest.mark.parametrize("data", [b"", b"   \n  "], ids=["empty", "blank"])
def test_empty_file(data: bytes) -> None:
    assert "empty file" in str(_error(data)) or "not well-formed" in str(_error(data))
    assert "empty file" in str(_error(b""))


def test_file_size_cap() -> None:
    error = _error(_GOOD, max_bytes=200)
    assert "larger than 200 bytes" in str(error)
    assert len(list(read_camt(_GOOD, max_bytes=len(_GOOD)))) == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            _GOOD.replace(b"camt.053.001.08", b"pain.001.001.09"),
            "namespace 'urn:iso:std:iso:20022:tech:xsd:pain.001.001.09' is not camt",
        ),
        (_GOOD.replace(b"BkToCstmrStmt", b"BkToCstmrAcctRpt"), "neither BkToCstmrStmt"),
        (
            _GOOD.replace(b"camt.053.001.08", b"camt.054.001.08"),
            "namespace says camt.054 but the message is BkToCstmrStmt",
        ),
        (b"<html><body/></html>", "root element is 'html'"),
    ],
)
def test_a_document_that_is_not_camt(data: bytes, message: str) -> None:
    assert message in str(_error(data))


def test_comments_cannot_split_a_remittance_text() -> None:
    document = _GOOD.replace(b"PH7K3QX9MZ2F", b"PH7K3Q<!-- x -->X9MZ2F<?pi y?>")
    (line,) = read_camt(document)
    assert line.remittance == ("PH7K3QX9MZ2F",)


def test_reads_from_a_path_and_a_file_object(tmp_path: Path) -> None:
    path = tmp_path / "statement.xml"
    path.write_bytes(_GOOD)
    assert len(list(read_camt(path))) == 1
    assert len(list(read_camt(str(path)))) == 1
    with path.open("rb") as handle:
        assert len(list(read_camt(handle))) == 1


# ------------------------------------------------------------------ streaming


class _GeneratedStatement:
    """A camt.053 of ``entries`` entries produced on demand, never whole in memory."""

    def __init__(self, entries: int) -> None:
        self._chunks = self._generate(entries)
        self._buffer = b""

    @staticmethod
    def _generate(entries: int) -> Iterator[bytes]:
        head, tail = _document("@@").split(b"@@")
        yield head
        for number in range(entries):
            yield _entry(
                str(10000 + number), details=_tx((f"memo {number}",), e2e=f"E{number}")
            ).encode()
        yield tail

    def read(self, size: int = -1) -> bytes:
        while len(self._buffer) < max(size, 1):
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def _resident_bytes() -> int:
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _memory_growth(entries: int) -> tuple[int, int]:
    """Resident memory growth between the 5,000th line and the last; lines read."""
    baseline = 0
    count = 0
    line: CamtLine
    for count, line in enumerate(read_camt(_GeneratedStatement(entries)), start=1):  # noqa: B007
        if count == 5000:
            baseline = _resident_bytes()
    assert count == entries
    assert line.amount == Decimal(10000 + entries - 1)
    return _resident_bytes() - baseline, count


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_memory_does_not_grow_with_the_file() -> None:
    """40,000 entries (~14 MB of XML) add under 15 MB.

    Kept whole (the clearing disabled), the tree adds about 120 MB: this test fails then.
    """
    growth, _ = _memory_growth(40_000)
    assert growth < 15 * 1024**2, growth


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_memory_does_not_grow_with_a_million_entries() -> None:
    growth, _ = _memory_growth(1_000_000)
    assert growth < 30 * 1024**2, growth
