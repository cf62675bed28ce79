"""ISO 20022 cash reports, streamed: camt.053 statements and camt.054 notifications.

One reader for both, because they share the entry (``Ntry``) that matters: camt.053 puts
entries at ``BkToCstmrStmt/Stmt/Ntry``, camt.054 at ``BkToCstmrDbtCdtNtfctn/Ntfctn/Ntry``.
It lives in the hub (not in ``banks/vietqr``): the vietqr connector reads camt.054 credit
notifications with it, reconciliation reads any bank's camt.053 with it, and banks depend
on the hub, never the reverse.

**Version-agnostic.** Versions 02, 04, 06, 08 and later are all in circulation. Elements
are matched by local name, never by namespace, and only the elements whose meaning has not
changed between versions are read. The differences that matter are handled explicitly:
``Sts`` is a plain code up to .06 and ``<Sts><Cd>`` (or ``<Prtry>``) from .08 on; a
transaction's amount is ``TxDtls/AmtDtls/TxAmt/Amt`` in .02 and ``TxDtls/Amt`` from .04 on;
``UETR`` exists from .08 on.

**Streaming.** ``lxml.etree.iterparse`` yields each ``Ntry`` when it ends; the reader turns
it into lines, then clears it and drops it from the tree, so memory holds one entry and the
statement's header, whatever the size of the file. Lines are produced lazily: a caller that
stops early stops the parse.

**Untrusted input.** A statement comes from outside. Any DOCTYPE is refused (it is checked
on the root element, before any entity could be used); the parser runs with
``resolve_entities=False``, ``no_network=True``, ``load_dtd=False``, ``huge_tree=False``
and never ``recover=True`` (which silently drops data); comments and processing
instructions are removed so they cannot split a text; the file is refused past
``max_bytes``; only UTF-8 is accepted (ISO 20022 mandates it). Every error is a
``CamtError`` naming the line and the element.

**Values.** Amounts are ``Decimal``, never negative (``CdtDbtInd`` gives the direction),
with their currency: the reader is generic. ``vnd_amount`` turns a line into ``int`` VND and
refuses another currency or a fraction. ``Dt`` is a business date; ``DtTm`` an instant
(nine fractional digits are cut to microseconds; without an offset it is local time,
Asia/Ho_Chi_Minh unless told otherwise) whose business date is taken in Asia/Ho_Chi_Minh.
Only the ISO code ``BOOK`` is booked; ``PDNG``, ``INFO`` and proprietary codes are not.

One line per transaction: an entry batching several ``TxDtls`` gives one line each (with
the transaction's own amount when the bank gives it, else ``None``); an entry without
``TxDtls`` gives one line.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Final, NamedTuple

from lxml import etree

from payhub.connectors.port import StatementLine
from payhub.domain.clock import VIETNAM
from payhub.domain.money import CURRENCY, vnd_from_decimal
from payhub.domain.reference import find_transfer_reference
from payhub.errors import StatementError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "CamtError",
    "CamtLine",
    "CamtReader",
    "CamtStatement",
    "CreditDebit",
    "read_camt",
    "to_statement_line",
    "vnd_amount",
]

DEFAULT_MAX_BYTES: Final = 2 * 1024**3
"""2 GiB: a million-entry camt.053 is about 1 GiB; anything far beyond is not a statement."""

_Element = Any  # lxml ships no type information
_NAMESPACE = re.compile(r"^urn:iso:std:iso:20022:tech:xsd:(camt\.05[34])\.(\d{3}\.\d{2})$")
_RECORDS: Final = {
    "BkToCstmrStmt": ("camt.053", "Stmt"),
    "BkToCstmrDbtCdtNtfctn": ("camt.054", "Ntfctn"),
}
_AMOUNT = re.compile(r"^[0-9]{1,18}(\.[0-9]{1,5})?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})(Z|[+-][0-9]{2}:[0-9]{2})?$")
_DATE_TIME = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(Z|[+-][0-9]{2}:[0-9]{2})?$"
)
_ENCODING = re.compile(rb"^<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_BOOKED: Final = "BOOK"
_STRUCTURE: Final = tuple(
    "{*}" + name
    for name in (
        "Document",
        "BkToCstmrStmt",
        "BkToCstmrDbtCdtNtfctn",
        "GrpHdr",
        "Stmt",
        "Ntfctn",
        "Ntry",
    )
)


class CamtError(StatementError):
    """A camt file that cannot be read, with where: ``camt line 42, Ntry/Amt: …``."""

    def __init__(self, message: str, *, line: int | None = None, element: str | None = None):
        where = ", ".join(
            part for part in (f"line {line}" if line else None, element) if part is not None
        )
        super().__init__(f"camt {where}: {message}" if where else f"camt: {message}")
        self.reason = message
        self.line = line
        self.element = element


class CreditDebit(StrEnum):
    CREDIT = "CRDT"
    DEBIT = "DBIT"


@dataclass(frozen=True, slots=True)
class CamtStatement:
    """The header of one ``Stmt`` (camt.053) or ``Ntfctn`` (camt.054)."""

    kind: str
    """``camt.053`` or ``camt.054``."""
    version: str | None
    """``001.08`` from the namespace; ``None`` for a document without one."""
    message_id: str | None
    statement_id: str | None
    account: str | None
    """``Acct/Id/IBAN`` or ``Acct/Id/Othr/Id``."""
    account_currency: str | None
    created_at: datetime | None
    line: int


@dataclass(frozen=True, slots=True)
class CamtLine:
    """One transaction of one entry, as the bank reported it."""

    statement: CamtStatement
    line: int
    """Source line of the ``<Ntry>`` element."""
    entry_index: int
    """0-based position of the entry in the document."""
    transaction_index: int
    transaction_count: int
    """``TxDtls`` in the entry; 0 when the entry has none (it is then its own line)."""
    direction: CreditDebit
    """The entry's ``CdtDbtInd``: how the account moved."""
    status: str
    status_proprietary: bool
    entry_amount: Decimal
    entry_currency: str
    amount: Decimal | None
    """The transaction's amount; the entry's when it is the entry's only transaction;
    ``None`` for a batched transaction the bank gives no amount for."""
    currency: str
    booking_date: date | None
    booked_at: datetime | None
    """Set when the bank gave ``BookgDt/DtTm``; ``booking_date`` is then its local date."""
    value_date: date | None
    entry_reference: str | None
    """``Ntry/NtryRef``."""
    account_servicer_reference: str | None
    """``Ntry/AcctSvcrRef``: the bank's reference for the entry."""
    end_to_end_id: str | None
    transaction_account_servicer_reference: str | None
    """``TxDtls/Refs/AcctSvcrRef``."""
    uetr: str | None
    remittance: tuple[str, ...]
    """``RmtInf/Ustrd``, in order (it may repeat)."""
    additional_info: str | None
    """``TxDtls/AddtlTxInf``, else ``Ntry/AddtlNtryInf``: some banks put the memo there."""
    reversal: bool

    @property
    def booked(self) -> bool:
        """Money really moved: the ISO status code ``BOOK`` (not ``PDNG``, ``INFO``, …)."""
        return self.status == _BOOKED and not self.status_proprietary

    @property
    def text(self) -> str:
        """Everything the payer or the bank wrote about the transfer, for reference finding.

        Repeated ``Ustrd`` are the lines of one text: joined with a line break, so that a
        reference wrapped across two of them is read as wrapped, not as two words.
        """
        parts = [*self.remittance]
        if self.additional_info:
            parts.append(self.additional_info)
        return "\n".join(parts)


class CamtReceived(NamedTuple):
    """One credit transaction as reconciliation reads it (``CamtReader.payments_received``).

    ``to_statement_line``'s values without the reference (the caller finds it in ``text``),
    in a tuple: a million are made per large statement.
    """

    line: int
    amount: int
    """Whole VND."""
    booked: bool
    booked_at: datetime | None
    """``BookgDt/DtTm``; a ``BookgDt/Dt`` is that day's midnight in Vietnam."""
    bank_transaction_id: str | None
    text: str


def received(line: CamtLine) -> CamtReceived:
    """A credit line as reconciliation reads it; a debit, another currency, a fraction of a
    dong or a batched transaction without an amount is an error (``to_statement_line``)."""
    if line.direction is not CreditDebit.CREDIT:
        raise CamtError("a debit is not a payment received", line=line.line, element="CdtDbtInd")
    booked_at = line.booked_at
    if booked_at is None and line.booking_date is not None:
        booked_at = datetime.combine(line.booking_date, datetime.min.time(), VIETNAM)
    return CamtReceived(
        line.line,
        vnd_amount(line),
        line.booked,
        booked_at,
        line.transaction_account_servicer_reference
        or line.account_servicer_reference
        or line.uetr
        or line.end_to_end_id,
        line.text,
    )


_CACHE_SIZE: Final = 4096
"""Distinct date and date-time texts remembered while reading (a day's statement repeats them)."""
_FREE_EVERY: Final = 256
"""Read entries are cleared at once and removed from the tree in runs of this many."""
_LEAN_NAMES: Final = (
    "Amt", "CdtDbtInd", "Sts", "BookgDt", "ValDt", "AcctSvcrRef", "AddtlNtryInf", "NtryDtls",
    "TxDtls", "Refs", "RmtInf", "AddtlTxInf", "AmtDtls", "EndToEndId", "UETR", "Ustrd", "Cd",
    "Prtry", "Dt", "DtTm",
)  # fmt: skip
"""The elements the lean reading looks at, by local name; a child's place is its code."""
_received: Final = tuple.__new__
"""Makes a ``CamtReceived`` without its generated ``__new__`` (Python: a million calls)."""
_LEAN_CODES: Final = {name: code for code, name in enumerate(_LEAN_NAMES)}
_LEAN_SIZE: Final = len(_LEAN_NAMES)
(
    _AMT, _CDT_DBT_IND, _STS, _BOOKG_DT, _VAL_DT, _ACCT_SVCR_REF, _ADDTL_NTRY_INF, _NTRY_DTLS,
    _TX_DTLS, _REFS, _RMT_INF, _ADDTL_TX_INF, _AMT_DTLS, _END_TO_END_ID, _UETR, _USTRD, _CD,
    _PRTRY, _DT, _DT_TM,
) = range(_LEAN_SIZE)  # fmt: skip


# ------------------------------------------------------------------ element access


_LOCAL_NAMES: dict[str, str] = {}


def _local(element: _Element) -> str:
    """The tag without its namespace (cached: a document repeats a few dozen tags)."""
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    name = _LOCAL_NAMES.get(tag)
    if name is None:
        name = _LOCAL_NAMES.setdefault(tag, tag.rpartition("}")[2])
    return name


def _child(element: _Element | None, name: str) -> _Element | None:
    """The first child named ``name`` in any namespace (or none)."""
    if element is not None:
        for child in element:
            if _local(child) == name:
                return child
    return None


def _children(element: _Element | None, name: str) -> list[_Element]:
    if element is None:
        return []
    return [child for child in element if _local(child) == name]


class _Children:
    """An element's children by local name, read in one pass (an entry is read field by field)."""

    __slots__ = ("by_name", "element")

    def __init__(self, element: _Element | None) -> None:
        self.element = element
        self.by_name: dict[str, list[_Element]] = {}
        for child in element if element is not None else ():
            self.by_name.setdefault(_local(child), []).append(child)

    def first(self, name: str) -> _Element | None:
        found = self.by_name.get(name)
        return found[0] if found else None

    def all(self, name: str) -> list[_Element]:
        return self.by_name.get(name, [])

    def text(self, name: str) -> str | None:
        return _text(self.first(name))


def _path(element: _Element | None, *names: str) -> _Element | None:
    for name in names:
        element = _child(element, name)
        if element is None:
            return None
    return element


def _text(element: _Element | None) -> str | None:
    if element is None:
        return None
    text = element.text
    if text is None:
        return None
    stripped = str(text).strip()
    return stripped or None


# ------------------------------------------------------------------ values


def _amount(element: _Element, where: str) -> tuple[Decimal, str]:
    text = _text(element) or ""
    line = element.sourceline
    if text.startswith("-"):
        raise CamtError(
            f"negative amount {text!r} (the direction is CdtDbtInd)", line=line, element=where
        )
    if not _AMOUNT.match(text):
        raise CamtError(f"amount {text!r} is not a decimal amount", line=line, element=where)
    currency = element.get("Ccy")
    if currency is None or not _CURRENCY.match(currency):
        raise CamtError(f"currency {currency!r} is not an ISO 4217 code", line=line, element=where)
    return Decimal(text), str(currency)


def _offset(text: str | None, local: tzinfo) -> tzinfo:
    if text is None:
        return local
    if text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[4:6])))


def _date_choice(
    element: _Element | None, where: str, local: tzinfo
) -> tuple[date | None, datetime | None]:
    """``<X><Dt>`` or ``<X><DtTm>``: the business date, and the instant when given."""
    if element is None:
        return None, None
    line = element.sourceline
    day = _text(_child(element, "Dt"))
    if day is not None:
        return _day(day, line, where), None
    moment = _text(_child(element, "DtTm"))
    if moment is not None:
        instant = _date_time(moment, line, where, local)
        try:
            return instant.astimezone(VIETNAM).date(), instant
        except OverflowError:  # year 1 or 9999 across midnight
            raise CamtError(
                f"date-time {moment!r} is out of range", line=line, element=where
            ) from None
    raise CamtError("neither Dt nor DtTm", line=line, element=where)


def _day(text: str, line: int | None, where: str) -> date:
    match = _DATE.match(text)
    try:
        if match is None:
            raise ValueError(text)
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise CamtError(f"date {text!r} is not YYYY-MM-DD", line=line, element=where) from None


def _date_time(text: str, line: int | None, where: str, local: tzinfo) -> datetime:
    match = _DATE_TIME.match(text)
    try:
        if match is None:
            raise ValueError(text)
        fraction = (match[7] or "")[:6].ljust(6, "0")
        return datetime(
            int(match[1]),
            int(match[2]),
            int(match[3]),
            int(match[4]),
            int(match[5]),
            int(match[6]),
            int(fraction),
            tzinfo=_offset(match[8], local),
        )
    except ValueError:
        raise CamtError(f"date-time {text!r} is not ISO 8601", line=line, element=where) from None


def _status(entry: _Element, status: _Element | None) -> tuple[str, bool]:
    if status is None:
        raise CamtError("Sts missing", line=entry.sourceline, element="Ntry")
    code = _text(_child(status, "Cd"))
    if code is not None:
        return code, False
    proprietary = _text(_child(status, "Prtry"))
    if proprietary is not None:
        return proprietary, True
    plain = _text(status)
    if plain is None:
        raise CamtError("Sts holds no code", line=status.sourceline, element="Ntry/Sts")
    return plain, False


def _account(record: _Element) -> tuple[str | None, str | None]:
    account = _child(record, "Acct")
    if account is None:
        return None, None
    identification = _child(account, "Id")
    number = None
    if identification is not None:
        number = _text(_child(identification, "IBAN")) or _text(_path(identification, "Othr", "Id"))
    return number, _text(_child(account, "Ccy"))


# ------------------------------------------------------------------ the byte stream


class _CappedUtf8:
    """A file object for lxml that refuses more than ``max_bytes`` and non-UTF-8 input."""

    def __init__(self, raw: IO[bytes], max_bytes: int) -> None:
        self._raw = raw
        self._max_bytes = max_bytes
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if self.total == 0 and data:
            self._check_encoding(data)
        self.total += len(data)
        if self.total > self._max_bytes:
            raise CamtError(f"file larger than {self._max_bytes} bytes")
        return data

    @staticmethod
    def _check_encoding(head: bytes) -> None:
        if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head[:4]:
            raise CamtError("file is UTF-16 or UTF-32; ISO 20022 files are UTF-8", line=1)
        declared = _ENCODING.match(head.removeprefix(b"\xef\xbb\xbf"))
        if declared is not None and declared[1].lower() not in (b"utf-8", b"utf8"):
            encoding = declared[1].decode("ascii")
            raise CamtError(f"file declares encoding {encoding}; ISO 20022 files are UTF-8", line=1)


def _open(source: bytes | str | os.PathLike[str] | IO[bytes]) -> IO[bytes]:
    if isinstance(source, bytes):
        return io.BytesIO(source)
    if isinstance(source, str | os.PathLike):
        return Path(source).open("rb")
    return source


# ------------------------------------------------------------------ the reader


class CamtReader:
    """Iterate a camt.053 or camt.054 document as ``CamtLine``s, one entry in memory at once.

    ``statements`` fills as each statement's header is read (also for statements without
    entries). ``local_timezone`` is the zone of a ``DtTm`` given without an offset.
    """

    def __init__(
        self,
        source: bytes | str | os.PathLike[str] | IO[bytes],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        local_timezone: tzinfo = VIETNAM,
    ) -> None:
        self._source = source
        self._max_bytes = max_bytes
        self._local = local_timezone
        self.statements: list[CamtStatement] = []
        self.kind: str | None = None
        self.version: str | None = None
        self._message_id: str | None = None
        self._entries = 0
        # The lean reading's memory: codes by tag, and the values of date and
        # date-time texts (``None``: not valid, the general reading says why).
        self._codes: dict[Any, int] = {}
        self._days: dict[str, datetime | None] = {}
        self._moments: dict[str, datetime | None] = {}

    def __iter__(self) -> Iterator[CamtLine]:
        for entry, statement in self._entries_of(self._source):
            yield from self._lines(entry, statement)

    def payments_received(self) -> Iterator[CamtReceived]:
        """Each credit transaction as ``CamtReceived``: what reconciliation needs, read lean.

        The same values as ``to_statement_line`` over ``iter(self)`` with the debits skipped
        (and the same errors), built without a ``CamtLine`` per transaction: an entry of the
        usual shape (one or no ``TxDtls``, a whole VND amount, ``CRDT``) is read field by
        field in one pass over its children; any other entry, and any entry the lean pass
        has a doubt about, goes through the general reader, which then also gives the error.
        """
        lean = self._lean
        for entry, statement in self._entries_of(self._source):
            found = lean(entry)
            if found is not None:
                yield found
            else:
                for line in self._lines(entry, statement):
                    if line.direction is CreditDebit.CREDIT:
                        yield received(line)

    def _entries_of(
        self, source: bytes | str | os.PathLike[str] | IO[bytes]
    ) -> Iterator[tuple[_Element, CamtStatement]]:
        """Each ``Ntry`` with its statement; the file's errors as ``CamtError``s."""
        raw = _open(source)
        try:
            stream = _CappedUtf8(raw, self._max_bytes)
            try:
                yield from self._parse(stream)
            except etree.XMLSyntaxError as exc:
                if stream.total == 0:
                    raise CamtError("empty file") from None
                line = exc.lineno or None
                raise CamtError(f"not well-formed XML: {exc.msg}", line=line) from None
            if stream.total == 0:
                raise CamtError("empty file")
        finally:
            if raw is not self._source:
                raw.close()

    def _parse(self, stream: _CappedUtf8) -> Iterator[tuple[_Element, CamtStatement]]:
        """Each complete ``Ntry`` of each statement, with its statement's header.

        Events only for the few elements that structure the document, and only when they
        *start* (half the parser's calls into Python of start and end events): an element
        is complete when the next structural element that is not inside it starts, or when
        the document ends. Whitespace between elements is dropped by the parser (no value
        read here is whitespace between elements; every text read is stripped).
        """
        events = etree.iterparse(
            stream,
            events=("start",),
            tag=_STRUCTURE,
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            recover=False,
            remove_comments=True,
            remove_pis=True,
            remove_blank_text=True,
        )
        root: _Element | None = None
        message: _Element | None = None
        record: _Element | None = None
        record_name = ""
        statement: CamtStatement | None = None
        entry: _Element | None = None
        """The last ``Ntry`` started, read once the next element outside it starts."""
        group: _Element | None = None
        """The ``GrpHdr`` started, read likewise."""
        read = 0
        """Entries read since the elements before them were last freed."""
        for _, element in events:
            if root is None:
                self._check_root(element)
                root = element
                continue
            parent: _Element = element.getparent()
            if entry is not None and (parent is record or parent is message or parent is root):
                assert statement is not None
                yield entry, statement
                self._entries += 1
                entry.clear()
                read += 1
                if read == _FREE_EVERY:  # the cleared entries before this one, in one go
                    self._drop(entry)
                    read = 0
                entry = None
            if parent is message or parent is root:
                if group is not None:
                    self._message_id = _text(_child(group, "MsgId"))
                    group.clear()
                    group = None
                if record is not None:
                    if statement is None:
                        self._header(record)
                    self._drop(record)
                    record = statement = None
            if message is None and parent is root:
                record_name = self._check_message(element)
                message = element
            elif parent is message:
                name = _local(element)
                if name == record_name:
                    record = element
                elif name == "GrpHdr":
                    group = element
            elif parent is record and record is not None and _local(element) == "Ntry":
                if statement is None:
                    statement = self._header(record)
                entry = element
        if entry is not None:
            assert statement is not None
            yield entry, statement
            self._entries += 1
            self._drop(entry)
        if group is not None:
            self._message_id = _text(_child(group, "MsgId"))
        if record is not None and statement is None:
            self._header(record)
        if root is None:
            if events.root is not None:
                self._check_root(events.root)  # raises: why there is no camt Document
            raise CamtError("no camt Document element found")
        if message is None:
            children = [child for child in root if isinstance(child.tag, str)]
            if children:
                self._check_message(children[0])  # raises: not a camt message
            raise CamtError("Document holds no message", line=root.sourceline, element="Document")

    @staticmethod
    def _drop(element: _Element) -> None:
        """Free a read element and everything before it: memory holds one entry."""
        element.clear()
        parent = element.getparent()
        while element.getprevious() is not None:
            del parent[0]

    def _check_root(self, first: _Element) -> None:
        """The first structural element: no DOCTYPE before it, and it is the root Document."""
        tree = first.getroottree()
        docinfo = tree.docinfo
        if docinfo.doctype or docinfo.internalDTD is not None:
            raise CamtError("DOCTYPE refused (entities and DTDs are not allowed)", line=1)
        root = tree.getroot()
        if _local(root) != "Document" or first.getparent() is not None:
            raise CamtError(
                f"root element is {_local(root)!r}, expected 'Document'",
                line=root.sourceline,
                element=_local(root),
            )
        namespace = etree.QName(root).namespace
        if namespace is not None:
            match = _NAMESPACE.match(namespace)
            if match is None:
                raise CamtError(
                    f"namespace {namespace!r} is not camt.053 or camt.054",
                    line=root.sourceline,
                    element="Document",
                )
            self.kind, self.version = match[1], match[2]

    def _check_message(self, message: _Element) -> str:
        name = _local(message)
        if name not in _RECORDS:
            raise CamtError(
                f"{name!r} is neither BkToCstmrStmt (camt.053) nor BkToCstmrDbtCdtNtfctn "
                "(camt.054)",
                line=message.sourceline,
                element=f"Document/{name}",
            )
        kind, record = _RECORDS[name]
        if self.kind is not None and self.kind != kind:
            raise CamtError(
                f"namespace says {self.kind} but the message is {name}",
                line=message.sourceline,
                element=f"Document/{name}",
            )
        self.kind = kind
        return record

    def _header(self, record: _Element) -> CamtStatement:
        account, currency = _account(record)
        created = _text(_child(record, "CreDtTm"))
        assert self.kind is not None
        statement = CamtStatement(
            kind=self.kind,
            version=self.version,
            message_id=self._message_id,
            statement_id=_text(_child(record, "Id")),
            account=account,
            account_currency=currency,
            created_at=(
                _date_time(created, record.sourceline, "CreDtTm", self._local)
                if created is not None
                else None
            ),
            line=record.sourceline,
        )
        self.statements.append(statement)
        return statement

    def _lines(self, entry: _Element, statement: CamtStatement) -> Iterator[CamtLine]:
        line = entry.sourceline
        fields = _Children(entry)
        amount_element = fields.first("Amt")
        if amount_element is None:
            raise CamtError("Amt missing", line=line, element="Ntry")
        entry_amount, entry_currency = _amount(amount_element, "Ntry/Amt")
        indicator = fields.text("CdtDbtInd")
        if indicator is None:
            raise CamtError("CdtDbtInd missing or empty", line=line, element="Ntry")
        try:
            direction = CreditDebit(indicator)
        except ValueError:
            raise CamtError(
                f"CdtDbtInd {indicator!r} is neither CRDT nor DBIT", line=line, element="Ntry"
            ) from None
        status, proprietary = _status(entry, fields.first("Sts"))
        reversal = (fields.text("RvslInd") or "false").lower() in ("true", "1")
        booking_date, booked_at = _date_choice(fields.first("BookgDt"), "Ntry/BookgDt", self._local)
        value_date, _ = _date_choice(fields.first("ValDt"), "Ntry/ValDt", self._local)
        transactions = [
            details for group in fields.all("NtryDtls") for details in _children(group, "TxDtls")
        ]
        entry_line = CamtLine(
            statement=statement,
            line=line,
            entry_index=self._entries,
            transaction_index=0,
            transaction_count=len(transactions),
            direction=direction,
            status=status,
            status_proprietary=proprietary,
            entry_amount=entry_amount,
            entry_currency=entry_currency,
            amount=entry_amount,
            currency=entry_currency,
            booking_date=booking_date,
            booked_at=booked_at,
            value_date=value_date,
            entry_reference=fields.text("NtryRef"),
            account_servicer_reference=fields.text("AcctSvcrRef"),
            end_to_end_id=None,
            transaction_account_servicer_reference=None,
            uetr=None,
            remittance=(),
            additional_info=fields.text("AddtlNtryInf"),
            reversal=reversal,
        )
        if not transactions:
            yield entry_line
            return
        for index, element in enumerate(transactions):
            details = _Children(element)
            amount_element = details.first("Amt")
            if amount_element is None:
                amount_element = _path(details.first("AmtDtls"), "TxAmt", "Amt")
            amount: Decimal | None
            if amount_element is not None:
                amount, currency = _amount(amount_element, "TxDtls/Amt")
            elif len(transactions) == 1:
                amount, currency = entry_amount, entry_currency
            else:
                amount, currency = None, entry_currency
            references = _Children(details.first("Refs"))
            ustrd = (_text(text) for text in _children(details.first("RmtInf"), "Ustrd"))
            yield replace(
                entry_line,
                transaction_index=index,
                amount=amount,
                currency=currency,
                end_to_end_id=references.text("EndToEndId"),
                transaction_account_servicer_reference=references.text("AcctSvcrRef"),
                uetr=references.text("UETR"),
                remittance=tuple(text for text in ustrd if text is not None),
                additional_info=details.text("AddtlTxInf") or entry_line.additional_info,
            )

    # -------------------------------------------------------------- the lean reading

    def _code(self, element: _Element) -> int:
        """The element's place in ``_LEAN_NAMES`` (-1: not read), remembered per tag."""
        tag = element.tag
        code = self._codes.get(tag)
        if code is None:
            code = self._codes[tag] = _LEAN_CODES.get(_local(element), -1)
        return code

    def _firsts(self, element: _Element) -> list[_Element | None]:
        """``element``'s first child of each name the lean reading knows, by its code."""
        codes = self._codes
        found: list[_Element | None] = [None] * _LEAN_SIZE
        for child in element:
            code = codes.get(child.tag)
            if code is None:
                code = self._code(child)
            if code >= 0 and found[code] is None:
                found[code] = child
        return found

    def _lean(self, entry: _Element) -> CamtReceived | None:
        """The entry's one credit, read in one pass over each element's children; ``None``
        when the general reading must decide: a batch, a debit, another currency, a
        fraction of a dong, a value that is missing or wrong (the general reading then
        names the error).

        Every rule is the general reading's (``_lines`` and ``received``): the *first*
        child of a name counts, texts are stripped, the same patterns check amounts and
        dates. Only the result is built: no ``CamtLine``, no dictionary of children; each
        child costs one lookup of its tag.
        """
        codes = self._codes
        code_of = self._code
        first: list[_Element | None] = [None] * _LEAN_SIZE
        transaction = None
        for child in entry:
            code = codes.get(child.tag)
            if code is None:
                code = code_of(child)
            if code == _NTRY_DTLS:
                for details in child:
                    code = codes.get(details.tag)
                    if code is None:
                        code = code_of(details)
                    if code == _TX_DTLS:
                        if transaction is not None:
                            return None  # a batch: one line per transaction
                        transaction = details
            elif code >= 0 and first[code] is None:
                first[code] = child
        if _text(first[_CDT_DBT_IND]) != "CRDT":
            return None
        amount = self._vnd(first[_AMT])
        status = first[_STS]
        if amount is None or status is None:
            return None
        inner = self._firsts(status)
        word = _text(inner[_CD])
        if word is None:
            if _text(inner[_PRTRY]) is not None:
                word = ""  # a proprietary status is never booked
            else:
                word = _text(status)
                if word is None:
                    return None
        booked_at = None
        booking = first[_BOOKG_DT]
        if booking is not None:
            booked_at = self._moment(booking)
            if booked_at is None:
                return None
        value = first[_VAL_DT]
        if value is not None and self._moment(value) is None:
            return None
        servicer = _text(first[_ACCT_SVCR_REF])
        note = _text(first[_ADDTL_NTRY_INF])
        if transaction is None:
            return _received(
                CamtReceived,
                (entry.sourceline, amount, word == _BOOKED, booked_at, servicer, note or ""),
            )
        inner = self._firsts(transaction)
        own = inner[_AMT]
        if own is None:
            own = _child(_child(inner[_AMT_DTLS], "TxAmt"), "Amt")
        if own is not None:
            amount = self._vnd(own)
            if amount is None:
                return None
        references = inner[_REFS]
        remittance = inner[_RMT_INF]
        note = _text(inner[_ADDTL_TX_INF]) or note
        identifier = servicer
        if references is not None:
            inner = self._firsts(references)
            identifier = (
                _text(inner[_ACCT_SVCR_REF])
                or servicer
                or _text(inner[_UETR])
                or _text(inner[_END_TO_END_ID])
            )
        lines: list[str] = []
        if remittance is not None:
            for child in remittance:
                code = codes.get(child.tag)
                if code is None:
                    code = code_of(child)
                if code == _USTRD:
                    text = child.text
                    if text is not None:
                        text = text.strip()
                        if text:
                            lines.append(text)
        if note:
            lines.append(note)
        return _received(
            CamtReceived,
            (entry.sourceline, amount, word == _BOOKED, booked_at, identifier, "\n".join(lines)),
        )

    @staticmethod
    def _vnd(element: _Element | None) -> int | None:
        """An ``Amt`` of whole VND as ``int``; ``None`` for anything else (see ``_amount``)."""
        if element is None or element.get("Ccy") != CURRENCY:
            return None
        text = element.text
        if text is None:
            return None
        text = text.strip()
        if text.isdigit() and text.isascii() and len(text) <= 18:  # _AMOUNT's whole number
            return int(text)
        if not _AMOUNT.match(text):
            return None
        whole, _, fraction = text.partition(".")
        if fraction.strip("0"):
            return None
        return int(whole)

    def _moment(self, element: _Element) -> datetime | None:
        """``<X><Dt>`` or ``<X><DtTm>`` as ``received`` gives it (a day is its midnight in
        Vietnam); ``None`` when ``_date_choice`` would refuse it. Remembered per text."""
        codes = self._codes
        day = moment = None
        for child in element:
            code = codes.get(child.tag)
            if code is None:
                code = self._code(child)
            if code == _DT:
                if day is None:
                    day = child
            elif code == _DT_TM and moment is None:
                moment = child
        text = _text(day)
        if text is not None:
            cache = self._days
        else:
            text = _text(moment)
            if text is None:
                return None
            cache = self._moments
        found = cache.get(text)
        if found is not None or text in cache:
            return found
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        try:
            if cache is self._days:
                found = datetime.combine(_day(text, None, ""), datetime.min.time(), VIETNAM)
            else:
                found = _date_time(text, None, "", self._local)
                found.astimezone(VIETNAM)  # as _date_choice takes the business date
        except (CamtError, ValueError, OverflowError):
            found = None
        cache[text] = found
        return found


def read_camt(
    source: bytes | str | os.PathLike[str] | IO[bytes],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    local_timezone: tzinfo = VIETNAM,
) -> Iterator[CamtLine]:
    """The lines of a camt.053 or camt.054 document, streamed (see ``CamtReader``)."""
    return iter(CamtReader(source, max_bytes=max_bytes, local_timezone=local_timezone))


# ------------------------------------------------------------------ VND


def vnd_amount(line: CamtLine) -> int:
    """The line's amount as ``int`` VND; another currency, a fraction or no amount is an error."""
    where = "TxDtls/Amt" if line.transaction_count else "Ntry/Amt"
    if line.currency != CURRENCY:
        raise CamtError(
            f"currency {line.currency} where {CURRENCY} is required", line=line.line, element=where
        )
    if line.amount is None:
        raise CamtError(
            "batched transaction without its own amount", line=line.line, element="TxDtls"
        )
    try:
        return vnd_from_decimal(line.amount)
    except ValueError:
        raise CamtError(
            f"VND amount with a fraction: {line.amount}", line=line.line, element=where
        ) from None


def to_statement_line(line: CamtLine) -> StatementLine:
    """A credit line in the connector port's shape: int VND, the transfer reference found.

    ``bank_reference`` is what ``find_transfer_reference`` reads in the remittance text
    (``None`` when it does not name exactly one); ``bank_transaction_id`` the bank's most
    specific reference. A debit has no ``StatementLine`` form (the port's amounts are
    payments received): it is an error here, and a caller skips debits before.
    """
    credit = received(line)
    return StatementLine(
        bank_reference=find_transfer_reference(credit.text),
        amount=credit.amount,
        booked_at=credit.booked_at,
        status=line.status,
        bank_transaction_id=credit.bank_transaction_id,
        text=credit.text,
    )
