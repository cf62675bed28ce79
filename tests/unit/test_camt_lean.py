"""The camt reader's lean reading gives what the general reading gives, value for value,
in this process or in the helper process that reads a large statement.

``CamtReader.payments_received`` (and ``read_camt053`` over it) reads the usual entry in one
pass and hands every other entry to the general reading (``iter(CamtReader)`` then
``received`` / ``to_statement_line``). Both are run over the real samples, over the bench's
statement, and over generated documents full of odd shapes and bad values: the same
credits, the same statement headers, the same error at the same point.
"""

from __future__ import annotations

import io
import random
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payhub.reconcile import bench, camt_worker
from payhub.reconcile.camt import CamtError, CamtReader, CreditDebit, received, to_statement_line
from payhub.reconcile.camt_entries import read_camt053
from payhub.reconcile.entries import StatementEntry

SAMPLES = Path("/work/shared/data/camt-genkgo")


def _outcome(items: Iterable[Any]) -> tuple[list[Any], str | None]:
    """Everything produced until the end or the first error, and that error's message."""
    produced: list[Any] = []
    try:
        for item in items:
            produced.append(item)
    except CamtError as exc:
        return produced, str(exc)
    return produced, None


def _general(document: bytes | Path) -> tuple[list[Any], str | None, list[Any]]:
    reader = CamtReader(document)
    lines = (received(line) for line in reader if line.direction is CreditDebit.CREDIT)
    return (*_outcome(lines), reader.statements)


def _lean(document: bytes | Path) -> tuple[list[Any], str | None, list[Any]]:
    reader = CamtReader(document)
    return (*_outcome(reader.payments_received()), reader.statements)


def _general_entries(document: bytes) -> Iterable[StatementEntry]:
    """The camt.053 adapter as it was, over ``to_statement_line``."""
    for line in CamtReader(document):
        if line.direction is not CreditDebit.CREDIT:
            continue
        port = to_statement_line(line)
        yield StatementEntry(
            line.line,
            port.bank_reference,
            port.amount,
            bool(line.booked),
            port.booked_at,
            port.bank_transaction_id,
            port.text,
            0,
        )


def _assert_same(document: bytes) -> None:
    assert _lean(document) == _general(document)
    assert _outcome(read_camt053(io.BytesIO(document))) == _outcome(_general_entries(document))


def _samples() -> list[Path]:
    return sorted(SAMPLES.glob("*.xml")) if SAMPLES.exists() else []


@pytest.mark.parametrize("sample", _samples(), ids=lambda p: p.name)
def test_real_samples_read_the_same(sample: Path) -> None:
    _assert_same(sample.read_bytes())
    # The samples are euro statements: vnd reading refuses them, both ways alike.
    assert _lean(sample) == _general(sample)


def _bench_statement(tmp_path: Path, count: int) -> bytes:
    database = tmp_path / "payments.db"
    with sqlite3.connect(database) as conn:
        conn.execute(f"CREATE TABLE payments ({bench._COLUMNS})")
    statement = tmp_path / "statement.xml"
    bench.build_vietqr_day(database, statement, count, "0011004567890")
    return statement.read_bytes()


def test_the_bench_statement_reads_the_same_and_lean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every credit of a realistic statement is read lean; debits go the general way."""
    document = _bench_statement(tmp_path, 3000)
    _assert_same(document)
    general_entries = list(_general_entries(document))
    assert {entry.settled for entry in general_entries} == {True, False}  # BOOK and PDNG
    assert sum(entry.reference is None for entry in general_entries) == bench.UNKNOWN_LINES // 2
    calls: list[int] = []
    lines = CamtReader._lines

    def counted(self: CamtReader, entry: Any, statement: Any) -> Any:
        calls.append(entry.sourceline)
        return lines(self, entry, statement)

    monkeypatch.setattr(CamtReader, "_lines", counted)
    assert list(read_camt053(io.BytesIO(document))) == general_entries
    debits = 3000 // bench.DEBIT_EVERY + 1
    assert len(calls) == debits  # the general reading was asked about the debits only


# ------------------------------------------------------------------ generated documents
#
# Each field is mostly a value the lean reading takes (so that it is the lean reading that
# answers), sometimes one it must leave to the general reading (odd or wrong).

_WS = ["", "", " ", "\n  ", "\t"]
_AMOUNTS = (
    ["150000", "150000.00", "0150000", "2550000.0", "0", "50000.00000"],
    ["150000.50", "-5", "1e5", "", " 150000 ", "10,000", "1234567890123456789", "1.123456"],
)
_CURRENCIES = (['Ccy="VND"'], ['Ccy="EUR"', 'Ccy="vn"', "", 'Ccy=" VND"'])
_DATES = (
    ["<Dt>2026-11-27</Dt>", "<DtTm>2026-11-27T10:00:00+07:00</DtTm>",
     "<DtTm>2026-11-27T10:00:00.123456789</DtTm>", "<DtTm>2026-11-27T03:00:00Z</DtTm>",
     "<Dt></Dt><DtTm>2026-11-27T10:00:00</DtTm>", "<Dt> 2026-11-27 </Dt>",
     "<Dt>2026-11-27+07:00</Dt>", "<DtTm>2026-11-27T10:00:00</DtTm><Dt>2026-11-28</Dt>"],
    ["<Dt>2026-13-01</Dt>", "<DtTm>2026-11-27 10:00</DtTm>", "", "<Dt/>",
     "<DtTm>0001-01-01T00:00:00+01:00</DtTm>", "<DtTm>2026-11-27T10:00:00+7</DtTm>"],
)  # fmt: skip
_STATUSES = (
    ["<Sts>BOOK</Sts>", "<Sts><Cd>BOOK</Cd></Sts>", "<Sts><Cd>PDNG</Cd></Sts>", "<Sts>PDNG</Sts>",
     "<Sts><Prtry>BOOK</Prtry></Sts>", "<Sts><Cd></Cd><Prtry>X</Prtry></Sts>",
     "<Sts><Cd>INFO</Cd></Sts>", "<Sts> <Cd> BOOK </Cd> </Sts>", "<Sts><Cd/>BOOK</Sts>",
     "<Sts><Prtry>P</Prtry><Cd>BOOK</Cd></Sts>", "<Sts><Cd>BOOK</Cd><Cd>PDNG</Cd></Sts>"],
    ["", "<Sts></Sts>", "<Sts><Cd/></Sts>", "<Sts>BOOK<Prtry>P</Prtry></Sts>"],
)  # fmt: skip
_INDICATORS = (["CRDT", " CRDT "], ["DBIT", "CRED", "", None])
_TEXTS = (
    [None, "", "  ", "PH7K3QX9MZ2F", "MBVCB.1234567.ph7k-3qx9-mz2f.CT tu 0123", "phi",
     "IBFT PHH9KNWB110J", "PH7K3", "QX9MZ2F xin cam on", "a &amp; b &lt;c&gt;", "Phí học"],
    [],
)  # fmt: skip
_OPTIONAL = ([None, "FT1", "", "NPS000000000001", " E2E "], [])


def _pick(rnd: random.Random, choices: tuple[list[Any], list[Any]]) -> Any:
    good, odd = choices
    if odd and rnd.random() < 0.15:
        return rnd.choice(odd)
    return rnd.choice(good)


def _element(name: str, text: str | None, attrs: str = "") -> str:
    if text is None:
        return ""
    return f"<{name}{attrs}>{text}</{name}>"


def _money(rnd: random.Random) -> str:
    return f"<Amt {_pick(rnd, _CURRENCIES)}>{_pick(rnd, _AMOUNTS)}</Amt>"


def _transaction(rnd: random.Random) -> str:
    parts = []
    names = ["AcctSvcrRef", "EndToEndId", "UETR"]
    names += rnd.choices(names, k=rnd.randint(0, 2))
    rnd.shuffle(names)
    if rnd.random() < 0.8:
        refs = "".join(_element(name, _pick(rnd, _OPTIONAL)) for name in names)
        parts.append(f"<Refs>{refs}<Prtry><Tp>X</Tp><Ref>Y</Ref></Prtry></Refs>")
    shape = rnd.choice(["own", "own", "v02", "none", "both", "two", "v02 empty"])
    if shape in ("own", "both", "two"):
        parts.append(_money(rnd))
    if shape == "two":
        parts.append(_money(rnd))
    if shape in ("v02", "both"):
        parts.append(f"<AmtDtls><InstdAmt>{_money(rnd)}</InstdAmt><TxAmt>{_money(rnd)}</TxAmt>"
                     "</AmtDtls>")  # fmt: skip
    if shape == "v02 empty":
        parts.append(f"<AmtDtls><InstdAmt>{_money(rnd)}</InstdAmt></AmtDtls>")
    parts.append(_element("CdtDbtInd", _pick(rnd, _INDICATORS)))
    if rnd.random() < 0.8:
        lines = [
            _element("Ustrd", _pick(rnd, _TEXTS)) or "<Ustrd/>" for _ in range(rnd.randint(0, 3))
        ]
        if rnd.random() < 0.25:
            lines.insert(rnd.randint(0, len(lines)), rnd.choice([
                "<Strd><CdtrRefInf><Ref>PH7K3QX9MZ2F</Ref></CdtrRefInf></Strd>",
                "<Strd>PH7K3QX9MZ2F</Strd>",
                '<o:Ustrd xmlns:o="urn:other">foreign namespace, same name</o:Ustrd>',
                "<Cd>a name read elsewhere</Cd>",
            ]))  # fmt: skip
        parts.append(f"<RmtInf>{''.join(lines)}</RmtInf>")
        if rnd.random() < 0.2:
            parts.append("<RmtInf><Ustrd>second RmtInf PH7K3QX9MZ2F</Ustrd></RmtInf>")
    parts.append(_element("AddtlTxInf", _pick(rnd, _TEXTS)))
    if rnd.random() < 0.2:
        parts.append(_element("AddtlTxInf", "second AddtlTxInf"))
    if rnd.random() < 0.25:
        rnd.shuffle(parts)
    return "<TxDtls>" + rnd.choice(_WS).join(parts) + "</TxDtls>"


def _entry(rnd: random.Random) -> str:
    parts = [
        _element("NtryRef", _pick(rnd, _OPTIONAL)),
        _money(rnd) if rnd.random() < 0.95 else "",
        _element("CdtDbtInd", _pick(rnd, _INDICATORS)),
        _pick(rnd, _STATUSES),
        _element("RvslInd", rnd.choice([None, "true", "false"])),
        _element("BookgDt", _pick(rnd, _DATES) if rnd.random() < 0.85 else None),
        _element("ValDt", _pick(rnd, _DATES) if rnd.random() < 0.7 else None),
        _element("AcctSvcrRef", _pick(rnd, _OPTIONAL)),
        "<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd></Fmly></Domn></BkTxCd>",
        _element("AddtlNtryInf", _pick(rnd, _TEXTS)),
    ]
    if rnd.random() < 0.2:
        parts.insert(rnd.randint(0, len(parts)), rnd.choice([
            '<Amt Ccy="VND">99</Amt>', "<CdtDbtInd>DBIT</CdtDbtInd>", "<Sts>PDNG</Sts>",
            '<x:Amt xmlns:x="urn:other" Ccy="VND">7</x:Amt>', "<AcctSvcrRef>SECOND</AcctSvcrRef>",
            "<BookgDt><Dt>2026-11-28</Dt></BookgDt>", "<Unknown><Amt>1</Amt></Unknown>",
            "<ValDt><Dt>2026-02-30</Dt></ValDt>", "<AddtlNtryInf>second</AddtlNtryInf>",
        ]))  # fmt: skip
    shape = rnd.choice(["one", "one", "one", "none", "empty", "batch", "two groups"])
    groups = {
        "one": [[_transaction(rnd)]],
        "none": [],
        "empty": [[]],
        "batch": [[_transaction(rnd), _transaction(rnd)]],
        "two groups": [[_transaction(rnd)], [_transaction(rnd)]],
    }[shape]
    for group in groups:
        parts.append("<NtryDtls><Btch><NbOfTxs>1</NbOfTxs></Btch>" + "".join(group) + "</NtryDtls>")
    return "<Ntry>" + rnd.choice(_WS).join(parts) + "</Ntry>"


def _document(rnd: random.Random) -> bytes:
    version = rnd.choice(["02", "04", "06", "08", "13"])
    kind = rnd.choice(["053", "054"])
    message, record = (
        ("BkToCstmrStmt", "Stmt") if kind == "053" else ("BkToCstmrDbtCdtNtfctn", "Ntfctn")
    )
    namespace = f' xmlns="urn:iso:std:iso:20022:tech:xsd:camt.{kind}.001.{version}"'
    if rnd.random() < 0.15:
        namespace = ""
    records = []
    for number in range(rnd.randint(1, 2)):
        entries = "\n".join(_entry(rnd) for _ in range(rnd.randint(0, 4)))
        records.append(
            f"<{record}><Id>S{number}</Id><CreDtTm>2026-11-28T00:05:00+07:00</CreDtTm>"
            f"<Acct><Id><Othr><Id>0011004567890</Id></Othr></Id><Ccy>VND</Ccy></Acct>\n"
            f"{entries}\n</{record}>"
        )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Document{namespace}>\n<{message}>\n'
        f"<GrpHdr><MsgId>M1</MsgId><CreDtTm>2026-11-28T00:05:00+07:00</CreDtTm></GrpHdr>\n"
        + "\n".join(records)
        + f"\n</{message}>\n</Document>\n"
    ).encode()


_DOCUMENTS = st.integers(0, 2**64).map(lambda seed: _document(random.Random(seed)))
"""Seeded documents: a failure prints the document (and its seed replays it)."""


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_DOCUMENTS)
def test_generated_documents_read_the_same(document: bytes) -> None:
    _assert_same(document)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_DOCUMENTS, st.data())
def test_cut_documents_fail_the_same(document: bytes, data: st.DataObject) -> None:
    """A document cut anywhere: the same credits before the same error."""
    cut = data.draw(st.integers(0, len(document)))
    _assert_same(document[:cut])


# ------------------------------------------------------------------ the helper process


def _outcome_of(document: bytes, *, helper_from: int, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(camt_worker, "HELPER_FROM", helper_from)
    return _outcome(read_camt053(io.BytesIO(document)))


def _documents_for_the_helper(tmp_path: Path) -> list[bytes]:
    statement = _bench_statement(tmp_path, 2500)
    bad_value = statement.replace(b'<Amt Ccy="VND">150000</Amt>', b'<Amt Ccy="VND">-1</Amt>', 1)
    doctype = statement.replace(b"?>\n", b'?>\n<!DOCTYPE Document [<!ENTITY a "x">]>\n', 1)
    generated = [_document(random.Random(seed)) for seed in range(12)]
    return [statement, statement[: len(statement) // 3], bad_value, doctype, b"", *generated]


def test_a_large_statement_read_by_the_helper_process_gives_the_same_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper's credits and errors are the in-process reading's, whatever the size."""
    documents = _documents_for_the_helper(tmp_path)
    for document in documents:
        here = _outcome_of(document, helper_from=len(document) + 1, monkeypatch=monkeypatch)
        helper = _outcome_of(document, helper_from=1, monkeypatch=monkeypatch)
        assert helper == here
    entries, error = _outcome_of(documents[0], helper_from=1, monkeypatch=monkeypatch)
    assert error is None and len(entries) > 2500  # read whole, by the helper


def test_the_helper_stops_when_the_reader_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(camt_worker, "HELPER_FROM", 1)
    started: list[Any] = []
    popen = camt_worker.subprocess.Popen

    def recorded(*args: Any, **kwargs: Any) -> Any:
        started.append(popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(camt_worker.subprocess, "Popen", recorded)
    entries = read_camt053(io.BytesIO(_bench_statement(tmp_path, 2500)))
    assert next(entries).line > 0
    entries.close()
    (helper,) = started
    assert helper.returncode is not None  # ended and waited for, not left running


@pytest.mark.parametrize("helper_from", [1, 1 << 30], ids=["helper", "in-process"])
def test_the_account_is_checked_wherever_the_statement_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helper_from: int
) -> None:
    """The statement's Stmt/Acct/Id against the bank's account, in the helper process too."""
    from payhub.errors import StatementError
    from payhub.reconcile.entries import BankAccount

    monkeypatch.setattr(camt_worker, "HELPER_FROM", helper_from)
    statement = _bench_statement(tmp_path, 300)
    ours = BankAccount("vietqr", "0011004567890")
    assert len(list(read_camt053(io.BytesIO(statement), ours))) > 300
    entries = read_camt053(io.BytesIO(statement), BankAccount("vietqr", "0099999999"))
    with pytest.raises(StatementError, match="Stmt/Acct/Id") as refused:
        next(entries)  # refused before its first entry is handed out
    assert "0011004567890" in str(refused.value) and "0099999999" in str(refused.value)
