"""Statement readers by format, and each bank protocol's usual format.

A reader is registered under its format name; camt.053 (``payhub.reconcile.camt``) joins
with one ``register_reader`` call. The CLI and the API take an explicit format or the
bank's usual one.
"""

from __future__ import annotations

from payhub.errors import ConfigError
from payhub.reconcile.camt_entries import read_camt053
from payhub.reconcile.csv_reader import read_momo, read_vnpay
from payhub.reconcile.entries import StatementReader
from payhub.reconcile.mt940_reader import read_mt940

_READERS: dict[str, StatementReader] = {
    "vnpay-csv": read_vnpay,
    "momo-csv": read_momo,
    "mt940": read_mt940,
    "camt.053": read_camt053,
}

USUAL_FORMAT = {"vnpay": "vnpay-csv", "momo": "momo-csv", "vietqr": "camt.053"}
"""The format each bank protocol delivers its daily statement in (BANKS.md)."""


def register_reader(name: str, reader: StatementReader) -> None:
    """Make ``reader`` available as format ``name``."""
    _READERS[name] = reader


def formats() -> list[str]:
    return sorted(_READERS)


def reader_for(name: str) -> StatementReader:
    """The reader of format ``name``; a ``ConfigError`` lists the known ones."""
    reader = _READERS.get(name)
    if reader is None:
        raise ConfigError(f"unknown statement format {name!r} (known: {', '.join(formats())})")
    return reader


def usual_format(protocol: str) -> str:
    """The format a bank of ``protocol`` sends, when the caller names none."""
    found = USUAL_FORMAT.get(protocol)
    if found is None:
        raise ConfigError(f"no usual statement format for bank protocol {protocol!r}; give one")
    return found
