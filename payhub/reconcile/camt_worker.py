"""A large camt statement read on the machine's other core, by a helper process.

Parsing the XML and reading each entry (``CamtReader.payments_received``) is most of a
large camt.053's reconciliation, and it holds Python's lock the whole time (lxml calls back
into Python for every element it parses), so a thread cannot take it elsewhere. A helper
process can: this process keeps reading the statement's bytes (the engine hashes them as
they are read) and pipes them to the helper, which reads the credits exactly as
in-process and sends them back in batches (``marshal``: plain values only), while this
process finds the references and stages. A bad statement is the helper's ``CamtError``,
raised here with the same text; the helper holds one entry in memory, like the reader.

Only statements larger than ``HELPER_FROM`` go to a helper (starting one costs a fraction
of a second); the choice never changes a result, only where the work is done.
"""

from __future__ import annotations

import io
import marshal
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final

from payhub.errors import StatementError
from payhub.reconcile.camt import CamtError, CamtReader, CamtReceived, CamtStatement
from payhub.reconcile.entries import BankAccount, ByteSource

HELPER_FROM: Final = 8 * 1024 * 1024
"""Bytes: a statement at least this large is read by a helper process."""
_CHUNK: Final = 1024 * 1024
_BATCH: Final = 4096
_LENGTH: Final = 4


class _Chained:
    """The bytes already read, then the rest of the stream."""

    def __init__(self, head: bytes, rest: ByteSource) -> None:
        self._head = io.BytesIO(head)
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        data = self._head.read(size)
        if data:
            return data
        return self._rest.read(size)


def payments_received(
    stream: ByteSource, account: BankAccount | None = None
) -> Iterator[CamtReceived]:
    """``CamtReader(stream).payments_received()``, in a helper process when it is large,
    with every statement's account checked against ``account`` (see ``for_account``)."""
    head = stream.read(HELPER_FROM)
    if len(head) < HELPER_FROM:
        source: Any = _Chained(head, stream)
        return for_account(CamtReader(source), account)
    return _from_helper(head, stream, account)


def for_account(reader: CamtReader, account: BankAccount | None) -> Iterator[CamtReceived]:
    """The reader's credits; each statement's ``Stmt/Acct/Id`` checked against ``account``
    as soon as its header is read (before its first entry) and at the end (a statement
    without entries, a document without any)."""
    if account is None:
        yield from reader.payments_received()
        return
    checked = 0
    for received in reader.payments_received():
        if len(reader.statements) > checked:
            checked = _check_accounts(account, reader.statements, checked)
        yield received
    _check_accounts(account, reader.statements, checked)


def _check_accounts(account: BankAccount, statements: list[CamtStatement], checked: int) -> int:
    """Check the statements' accounts from ``checked`` on; returns how many are checked."""
    if not statements:
        account.check(None, where="camt")
    for statement in statements[checked:]:
        account.check(statement.account, where=f"camt line {statement.line}, Stmt/Acct/Id")
    return len(statements)


def _from_helper(
    head: bytes, stream: ByteSource, account: BankAccount | None
) -> Iterator[CamtReceived]:
    root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    with tempfile.TemporaryFile() as errors:
        expected = [] if account is None else [account.bank, account.number]
        helper = subprocess.Popen(  # noqa: S603 - our own module; the account is from our config
            [sys.executable, "-m", "payhub.reconcile.camt_worker", *expected],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
        )
        assert helper.stdin is not None and helper.stdout is not None
        failures: list[BaseException] = []
        feeder = threading.Thread(
            target=_feed, args=(helper.stdin, head, stream, failures), daemon=True
        )
        feeder.start()
        try:
            yield from _receive(helper.stdout, errors)
            feeder.join()
            if failures:
                raise failures[0]
        finally:
            if helper.poll() is None:
                helper.kill()
            helper.wait()
            helper.stdout.close()
            feeder.join()


def _feed(pipe: IO[bytes], head: bytes, stream: ByteSource, failures: list[BaseException]) -> None:
    """The statement's bytes into the helper (the engine's hashing sees every one)."""
    try:
        pipe.write(head)
        while chunk := stream.read(_CHUNK):
            pipe.write(chunk)
    except (BrokenPipeError, ValueError):
        pass  # the helper stopped (an error it reports, or this side gave up)
    except BaseException as exc:  # reading the statement failed: raised by the reader
        failures.append(exc)
    finally:
        try:
            pipe.close()
        except BrokenPipeError:
            pass


def _receive(pipe: IO[bytes], errors: IO[bytes]) -> Iterator[CamtReceived]:
    moments: dict[str, datetime] = {}
    make = tuple.__new__
    while True:
        size = pipe.read(_LENGTH)
        if len(size) < _LENGTH:
            errors.seek(0)
            detail = errors.read().decode("utf-8", "replace").strip().splitlines()[-3:]
            raise RuntimeError(f"camt helper process stopped: {' / '.join(detail)}")
        message = marshal.loads(pipe.read(int.from_bytes(size, "big")))  # noqa: S302
        kind = message[0]
        if kind == "lines":
            for line, amount, booked, at, transaction, text in message[1]:
                booked_at = None
                if at is not None:
                    booked_at = moments.get(at)
                    if booked_at is None:
                        if len(moments) > 4096:
                            moments.clear()
                        booked_at = moments[at] = datetime.fromisoformat(at)
                yield make(CamtReceived, (line, amount, booked, booked_at, transaction, text))
        elif kind == "error":
            raise CamtError(message[1], line=message[2], element=message[3])
        elif kind == "refused":  # not the bank's account
            raise StatementError(message[1])
        else:
            return


def _send(out: IO[bytes], message: Any) -> None:
    data = marshal.dumps(message)
    out.write(len(data).to_bytes(_LENGTH, "big"))
    out.write(data)
    out.flush()


def main() -> None:
    """The helper: the statement on standard input, the credits on standard output; the
    account to check (bank name and number) as arguments, when there is one."""
    account = BankAccount(sys.argv[1], sys.argv[2]) if len(sys.argv) == 3 else None
    out = sys.stdout.buffer
    batch: list[tuple[Any, ...]] = []
    last: datetime | None = None
    at: str | None = None
    try:
        for line, amount, booked, booked_at, transaction, text in for_account(
            CamtReader(sys.stdin.buffer), account
        ):
            if booked_at is not last:  # the reader hands out one object per distinct text
                last, at = booked_at, None if booked_at is None else booked_at.isoformat()
            batch.append((line, amount, booked, at, transaction, text))
            if len(batch) == _BATCH:
                _send(out, ("lines", batch))
                batch = []
    except CamtError as exc:
        _send(out, ("lines", batch))
        _send(out, ("error", exc.reason, exc.line, exc.element))
        return
    except StatementError as exc:  # the account check
        _send(out, ("lines", batch))
        _send(out, ("refused", str(exc)))
        return
    _send(out, ("lines", batch))
    _send(out, ("end",))


if __name__ == "__main__":
    main()
