"""``payhub reconcile`` and ``payhub finance login`` as an operator runs them."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from payhub.cli import main
from payhub.domain.clock import system_clock
from payhub.reconcile.session import verify
from payhub.settings import Settings, load_settings
from payhub.store.engine import create_engine
from tests.reconcile_world import faulty_day, load, snapshot


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Commands point structlog and the root logger at the captured stderr; undo that."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(name="setup")
def _setup(tmp_path: Path) -> Iterator[tuple[Path, Path, dict[str, int]]]:
    assert main(["init", str(tmp_path / "hub")]) == 0
    config = tmp_path / "hub" / "payhub.toml"
    day = faulty_day()

    async def fill() -> None:
        engine = create_engine(load_settings(config).database_url)
        await load(engine, day.payments)
        await engine.dispose()

    asyncio.run(fill())
    statement = tmp_path / "vnpay-20261127.csv"
    statement.write_bytes(
        day.csv(merchant=load_settings(config).banks["vnpay"].options["tmn_code"])
    )
    yield config, statement, day.expected


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def reconcile(config: Path, statement: Path, *extra: object) -> list[object]:
    return ["reconcile", "--config", config, "--bank", "vnpay", "--date", "2026-11-27",
            statement, *extra]  # fmt: skip


def test_text_report_then_every_format(
    setup: tuple[Path, Path, dict[str, int]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config, statement, expected = setup
    code, out, _ = run(capsys, *reconcile(config, statement))
    assert code == 0
    assert "completed" in out and "Amount mismatch" in out and "7 exception(s) to resolve" in out
    code, out, _ = run(capsys, *reconcile(config, statement, "--format", "json"))
    document = json.loads(out)
    assert document["counts"] == expected and len(document["exceptions"]) == 7
    code, out, _ = run(capsys, *reconcile(config, statement, "--format", "csv"))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 13  # 12 statement lines and the payment missing from them
    assert {r["class"] for r in rows} == set(expected)
    target = tmp_path / "report.html"
    code, _, err = run(capsys, *reconcile(config, statement, "--format", "html", "--out", target))
    assert code == 0 and "report written" in err
    assert "<h2>Exceptions</h2>" in target.read_text()


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"--bank": "nope"}, "--bank 'nope' is not configured"),
        ({"--date": "27/11/2026"}, "is not a date"),
        ({"--statement-format": "camt.099"}, "unknown statement format"),
    ],
)
def test_bad_arguments_are_one_line(
    setup: tuple[Path, Path, dict[str, int]],
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    fragment: str,
) -> None:
    config, statement, _ = setup
    argv = reconcile(config, statement)
    for option, value in change.items():
        if option in argv:
            argv[argv.index(option) + 1] = value
        else:
            argv += [option, value]
    code, _, err = run(capsys, *argv)
    assert code == 1 and err.startswith("payhub: ") and err.count("\n") == 1
    assert fragment in err


def test_an_unreadable_statement_exits_1_naming_the_line(
    setup: tuple[Path, Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    config, statement, _ = setup
    statement.write_bytes(statement.read_bytes().replace(b",2550000,", b",25500.5,", 1))
    code, out, err = run(capsys, *reconcile(config, statement))
    assert code == 1
    assert "line 2" in err and "fraction" in err and "no payment was changed" in out


def test_finance_login_prints_a_working_link(
    setup: tuple[Path, Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = setup
    code, out, _ = run(capsys, "finance", "login", "--config", config, "--minutes", "5")
    assert code == 0
    link = out.strip()
    settings = load_settings(config)
    assert link.startswith(f"{settings.public_url}/finance/login?token=")
    session = verify(settings, link.split("token=", 1)[1], purpose="login", now=system_clock())
    assert session.user == "finance"
    code, _, err = run(capsys, "finance", "login", "--config", config, "--user", "mallory")
    assert code == 1 and "not a finance user" in err


def test_finance_login_names_the_address_serve_really_listens_on(
    setup: tuple[Path, Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = setup
    argv = ("finance", "login", "--config", config, "--url", "http://127.0.0.1:9000/")
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert out.strip().startswith("http://127.0.0.1:9000/finance/login?token=")
    code, _, err = run(capsys, "finance", "login", "--config", config, "--url", "127.0.0.1:9000")
    assert code == 1 and "--url must be an http(s) address" in err


def _state(settings: Settings, loading: list[dict[str, object]] | None = None) -> dict[str, object]:
    """The database's payments, audit and outbox, after loading ``loading`` payments."""

    async def read() -> dict[str, object]:
        engine = create_engine(settings.database_url)
        try:
            if loading:
                await load(engine, loading)
            return await snapshot(engine)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _bomb(data: bytes) -> bytes:
    levels = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    prolog = f'<?xml version="1.0"?>\n<!DOCTYPE Document [<!ENTITY l0 "ha">{levels}]>\n'
    return prolog.encode() + data.split(b"\n", 1)[1].replace(b"<Ustrd>", b"<Ustrd>&l9;", 1)


def _external_entity(data: bytes) -> bytes:
    prolog = (
        '<?xml version="1.0"?>\n<!DOCTYPE Document [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
    )
    return prolog.encode() + data.split(b"\n", 1)[1].replace(b"<Ustrd>", b"<Ustrd>&x;", 1)


@pytest.mark.parametrize(
    ("bank", "make", "fragments"),
    [
        ("vnpay", lambda d, _: d.csv(merchant="OTHER002"),
         ["VNPay statement line 2: statement is for account OTHER002, bank vnpay collects into"]),
        ("vnpay", lambda d, a: d.csv(merchant=a).replace(b",00,", b"\xe9,00,", 1),
         ["VNPay statement line 2: not UTF-8"]),
        ("vnpay", lambda d, a: b"", ["VNPay statement is empty"]),
        ("vnpay", lambda d, a: d.csv(merchant=a).replace(b",20261127", b",20261120"),
         ["line 2: booked on 2026-11-20, but this statement is for 2026-11-27"]),
        ("vnpay", lambda d, a: d.csv(merchant=a)[:-12], ["VNPay statement line 13: 6 cells"]),
        ("vnpay", lambda d, a: d.csv(merchant=a).replace(b",2550000,", b",-2550000,", 1),
         ["line 2: amount -2550000 is negative"]),
        ("vietqr", lambda d, _: d.camt("0099887766"),
         ["camt line 8, Stmt/Acct/Id: statement is for account 0099887766, bank vietqr collects"]),
        ("vietqr", lambda d, a: _bomb(d.camt(a)), ["camt line 1: DOCTYPE refused"]),
        ("vietqr", lambda d, a: _external_entity(d.camt(a)), ["camt line 1: DOCTYPE refused"]),
        ("vietqr", lambda d, a: d.camt(a).decode().encode("utf-16"),
         ["camt line 1: file is UTF-16"]),
        ("vietqr", lambda d, a: d.camt(a)[:1500], ["not well-formed XML", "camt line "]),
        ("vietqr", lambda d, a: d.camt(a).replace(b'Ccy="VND"', b'Ccy="XYZ"'),
         ["currency XYZ where VND is required"]),
    ],
)  # fmt: skip
def test_a_bad_statement_fails_naming_the_line_and_changes_nothing(
    setup: tuple[Path, Path, dict[str, int]],
    capsys: pytest.CaptureFixture[str],
    bank: str,
    make: Callable[[object, str], bytes],
    fragments: list[str],
) -> None:
    config, statement, _ = setup
    settings = load_settings(config)
    option = {"vnpay": "tmn_code", "vietqr": "account"}[bank]
    account = settings.banks[bank].options[option]
    day = faulty_day(bank)
    before = _state(settings, day.payments if bank == "vietqr" else None)
    statement.write_bytes(make(day, account))
    code, out, err = run(capsys, *reconcile(config, statement, "--bank", bank))
    assert code == 1, out
    for fragment in fragments:
        assert fragment in err
    if "statement is for account" in fragments[0]:
        assert f"collects into {account}" in err
    assert "no payment was changed" in out
    assert _state(settings) == before
    # the day's own statement, from the bank's own account, reconciles
    statement.write_bytes(day.csv(merchant=account) if bank == "vnpay" else day.camt(account))
    code, out, err = run(capsys, *reconcile(config, statement, "--bank", bank))
    assert code == 0, err
