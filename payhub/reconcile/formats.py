"""Statement readers by format, and each bank protocol's usual format.

A reader is registered under its format name; a bank's connector names the format of its
daily statement (``BankConnector.statement_format``) and reads it through the reader
(``BankConnector.read_statement``). The CLI and the API take an explicit format or the
bank's usual one.

A statement must be for the bank's own account (``BankAccount``): each connector says
which one its statements name (``BankConnector.statement_account``), and the reader
refuses a file naming another account or none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from payhub.connectors.registry import connector_class
from payhub.errors import ConfigError
from payhub.reconcile.camt_entries import read_camt053
from payhub.reconcile.csv_reader import read_momo, read_vnpay
from payhub.reconcile.entries import BankAccount, ByteSource, StatementEntry, StatementReader
from payhub.reconcile.mt940_reader import read_mt940
from payhub.settings import BankSettings

_READERS: dict[str, StatementReader] = {
    "vnpay-csv": read_vnpay,
    "momo-csv": read_momo,
    "mt940": read_mt940,
    "camt.053": read_camt053,
}


def register_reader(name: str, reader: StatementReader) -> None:
    """Make ``reader`` available as format ``name``; it takes the ``account`` keyword."""
    _READERS[name] = reader


def formats() -> list[str]:
    return sorted(_READERS)


def reader_for(
    name: str, account: BankAccount | None = None
) -> Callable[[ByteSource], Iterator[StatementEntry]]:
    """The reader of format ``name``, checking ``account`` when given.

    A ``ConfigError`` lists the known formats.
    """
    reader = _READERS.get(name)
    if reader is None:
        raise ConfigError(f"unknown statement format {name!r} (known: {', '.join(formats())})")
    return reader if account is None else partial(reader, account=account)


def bank_account(bank: BankSettings) -> BankAccount | None:
    """The account ``bank``'s statements must name, as its connector reads its options."""
    number = connector_class(bank.connector).statement_account(bank.options)
    return BankAccount(bank.name, number) if number else None


def usual_format(protocol: str) -> str:
    """The format a bank of ``protocol`` sends (its connector's ``statement_format``)."""
    found = connector_class(protocol).statement_format
    if found is None:
        raise ConfigError(f"bank protocol {protocol!r} sends no statement; give a format")
    return found
