"""The ``payhub`` command (CONTRACT §7), driven in-process and, where a process matters, for real.

Each test works on a setup written by ``payhub init`` into ``tmp_path``, with its SQLite
database there; bad input must end in one ``payhub:`` line on standard error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import secrets
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from alembic import command as alembic_command
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.engine import Connection

from payhub.cli import SIMULATE_PORT, build_parser, main
from payhub.connectors.registry import available_protocols
from payhub.domain.clock import system_clock
from payhub.service.unit_of_work import UnitOfWork
from payhub.settings import load_settings
from payhub.setup import public_pem
from payhub.store import migrate
from payhub.store.engine import create_engine
from payhub.store.ledger import Ledger
from tests.factories import free_port

REPO = Path(__file__).resolve().parents[2]
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Commands point structlog and the root logger at the captured stderr; undo that."""
    saved = structlog.get_config()
    root, alembic = logging.getLogger(), logging.getLogger("alembic")
    handlers, levels = root.handlers[:], (root.level, alembic.level)
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(levels[0])
    alembic.setLevel(levels[1])


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """Run ``payhub ARGV`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main([str(arg) for arg in argv])
    except SystemExit as exc:  # argparse: --help and usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    assert err.startswith("payhub: "), err
    assert err.endswith("\n") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


@pytest.fixture(name="config")
def _config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A fresh ``payhub init`` setup, its SQLite database migrated by ``init``."""
    code, out, err = cli(capsys, "init", tmp_path / "local", "--port", free_port())
    assert (code, err) == (0, ""), err
    path = tmp_path / "local" / "payhub.toml"
    assert str(path) in out
    return path


@pytest.fixture(name="upgraded")
def _upgraded(config: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, out, err = cli(capsys, "db", "upgrade", "--config", config)
    assert (code, err) == (0, ""), err
    assert out.startswith("database at revision ")
    return config


@pytest.fixture(name="stale_database", params=["not made by init", "downgraded"])
def _stale_database(request: pytest.FixtureRequest, config: Path, tmp_path: Path) -> Path:
    """The setup on a database whose schema is not current: one ``init`` did not make (an
    empty SQLite file), or init's own taken back to an older schema."""
    if request.param == "not made by init":
        other = tmp_path / "elsewhere.db"
        sqlite3.connect(other).close()
        text = config.read_text()
        config.write_text(text.replace('"sqlite:///payhub.db"', json.dumps(f"sqlite:///{other}")))
        assert config.read_text() != text
    else:

        async def downgrade() -> None:
            engine = create_engine(load_settings(config).database_url)

            def run(connection: Connection) -> None:
                alembic = migrate.alembic_config()
                alembic.attributes["connection"] = connection
                alembic_command.downgrade(alembic, "base")

            try:
                async with engine.begin() as conn:
                    await conn.run_sync(run)
            finally:
                await engine.dispose()

        asyncio.run(downgrade())
    assert current_revision(config) != migrate.head_revision()
    return config


def current_revision(config: Path) -> str | None:
    async def read() -> str | None:
        engine = create_engine(load_settings(config).database_url)
        try:
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def public_key_file(directory: Path, name: str) -> tuple[Path, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    path = directory / f"{name}.pub.pem"
    path.write_text(public_pem(key))
    return path, key


def raw_public(key: Ed25519PublicKey | bytes) -> bytes:
    assert isinstance(key, Ed25519PublicKey)
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# --- init -----------------------------------------------------------------------------------


def test_init_writes_a_self_contained_setup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    code, out, err = cli(capsys, "init", tmp_path / "local", "--port", port)
    assert (code, err) == (0, "")
    local = tmp_path / "local"
    assert f"payhub serve --config {local / 'payhub.toml'} --simulators" in out
    assert "db upgrade" not in out  # init's database is ready to serve

    settings = load_settings(local / "payhub.toml")
    assert settings.database_url == f"sqlite+aiosqlite:///{local / 'payhub.db'}"
    assert current_revision(local / "payhub.toml") == migrate.head_revision() is not None
    assert settings.public_url == f"http://127.0.0.1:{port}"
    assert settings.port == port

    for name, principal in (
        ("demo", settings.portals["demo"]),
        ("finance", settings.finance_users["finance"]),
    ):
        pem = local / "keys" / f"{name}.pem"
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
        private = serialization.load_pem_private_key(pem.read_bytes(), password=None)
        assert isinstance(private, Ed25519PrivateKey)
        [key] = principal.keys
        assert (key.keyid, key.algorithm) == (name, "ed25519")
        assert raw_public(key.key) == raw_public(private.public_key())

    [hub_key] = settings.hub_keys
    hub_pem = local / "keys" / f"{hub_key.kid}.pem"
    assert stat.S_IMODE(hub_pem.stat().st_mode) == 0o600
    for private in ("keys/demo.pem", "keys/finance.pem", f"keys/{hub_key.kid}.pem"):
        assert private in out  # said, so that nobody shares them unknowingly
    assert str(local / ".gitignore") in out

    assert sorted(settings.banks) == available_protocols()
    for name, bank in settings.banks.items():
        assert bank.connector == name
        assert bank.options["base_url"] == f"{settings.public_url}/sim/{name}"
    assert settings.default_bank in settings.banks


def _git(folder: Path, *argv: str) -> str:
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *argv],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def test_init_keeps_private_keys_and_the_database_out_of_git(config: Path) -> None:
    folder = config.parent
    (folder / "keys" / "bo-tp.secret").write_bytes(secrets.token_bytes(32))  # as README adds
    _git(folder, "init", "-q")
    _git(folder, "add", "--all")
    staged = set(_git(folder, "ls-files").split())
    assert staged == {".gitignore", "payhub.toml", "keys/demo.pub.pem", "keys/finance.pub.pem"}
    assert (folder / "payhub.db").exists() and (folder / "keys" / "demo.pem").exists()


def test_init_adds_to_a_gitignore_already_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".gitignore").write_text("node_modules/\n*.log")
    assert cli(capsys, "init", tmp_path, "--port", free_port())[0] == 0
    lines = (tmp_path / ".gitignore").read_text().splitlines()
    assert lines[:2] == ["node_modules/", "*.log"]
    assert {"keys/*", "!keys/*.pub.pem", "payhub.db"} <= set(lines)

    assert cli(capsys, "init", tmp_path, "--force")[0] == 0
    assert (tmp_path / ".gitignore").read_text().splitlines() == lines  # not added twice


def test_init_refuses_to_overwrite_without_force(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = config.read_bytes()
    demo_key = (config.parent / "keys" / "demo.pem").read_bytes()

    code, out, err = cli(capsys, "init", config.parent)
    assert_one_line_error(code, err, "already exists", "--force")
    assert out == ""
    assert config.read_bytes() == before
    assert (config.parent / "keys" / "demo.pem").read_bytes() == demo_key

    code, _, err = cli(capsys, "init", config.parent, "--force")
    assert (code, err) == (0, "")
    assert (config.parent / "keys" / "demo.pem").read_bytes() != demo_key
    load_settings(config)


def test_init_force_keeps_private_keys_owner_only(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = config.parent / "keys" / "demo.pem"
    demo.chmod(0o644)
    assert cli(capsys, "init", config.parent, "--force")[0] == 0
    assert stat.S_IMODE(demo.stat().st_mode) == 0o600


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_init_rejects_a_bad_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], port: str
) -> None:
    code, _, err = cli(capsys, "init", tmp_path / "local", "--port", port)
    assert_one_line_error(code, err, "--port")
    assert not (tmp_path / "local" / "payhub.toml").exists()


# --- portal add, finance add --------------------------------------------------------------


def test_portal_add_with_a_public_key(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pem, key = public_key_file(config.parent, "tinh-bn")
    callback = "https://dvc.bacninh.example/payhub"
    code, out, err = cli(
        capsys, "portal", "add", "tinh-bn", "--config", config, "--public-key", pem,
        "--callback", callback,
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert "tinh-bn" in out and "restart" in out

    portal = load_settings(config).portals["tinh-bn"]
    assert portal.callback_url == callback
    assert portal.whsec is None
    [request_key] = portal.keys
    assert (request_key.keyid, request_key.algorithm) == ("tinh-bn", "ed25519")
    assert raw_public(request_key.key) == raw_public(key.public_key())


def test_portal_add_with_an_hmac_secret_and_whsec(
    config: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    secret = secrets.token_bytes(32)
    secret_file = tmp_path / "bo-tp.secret"
    secret_file.write_bytes(secret)
    code, _, err = cli(
        capsys, "portal", "add", "bo-tp", "--config", config, "--hmac-secret-file", secret_file,
        "--callback", "https://bo-tp.example/payhub", "--whsec", WHSEC,
    )  # fmt: skip
    assert (code, err) == (0, "")

    portal = load_settings(config).portals["bo-tp"]
    assert portal.whsec == WHSEC
    [request_key] = portal.keys
    assert (request_key.keyid, request_key.algorithm, request_key.key) == (
        "bo-tp",
        "hmac-sha256",
        secret,
    )


def _ec_public_pem(path: Path) -> Path:
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


P1 = "portal add p1 --callback https://p.example"
REJECTED_ADDS: dict[str, tuple[str, str]] = {
    "no key": (P1, "--public-key"),
    "both keys": (f"{P1} --public-key {{pub}} --hmac-secret-file {{secret}}", "exactly one"),
    "duplicate portal": (
        "portal add demo --callback https://p.example --public-key {pub}",
        "portals.demo already exists",
    ),
    "keyid of another principal": (
        "portal add finance --callback https://p.example --public-key {pub}",
        "'finance'",
    ),
    "bad whsec": (f"{P1} --public-key {{pub}} --whsec not-a-secret", "portals.p1.whsec"),
    "short secret": (f"{P1} --hmac-secret-file {{short}}", "32 bytes"),
    "missing secret file": (f"{P1} --hmac-secret-file {{missing}}", "cannot read"),
    "missing public key": (f"{P1} --public-key {{missing}}", "cannot read public key"),
    "not ed25519": (f"{P1} --public-key {{ec}}", "not Ed25519"),
    "a private key": (f"{P1} --public-key {{private}}", "not a PEM public key"),
    "bad callback": (
        "portal add p1 --callback dvc.example --public-key {pub}",
        "portals.p1.callback_url",
    ),
    "bad id": (
        "portal add bad/id --callback https://p.example --public-key {pub}",
        "'bad/id' is not a valid id",
    ),
    "finance without key": ("finance add ketoan1", "--public-key"),
    "duplicate finance": ("finance add finance --public-key {pub}", "already"),
}


@pytest.mark.parametrize("case", REJECTED_ADDS)
def test_a_rejected_add_leaves_the_file_unchanged(
    config: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str
) -> None:
    files = {
        "pub": public_key_file(tmp_path, "new")[0],
        "secret": tmp_path / "ok.secret",
        "short": tmp_path / "short.secret",
        "missing": tmp_path / "missing",
        "ec": _ec_public_pem(tmp_path / "ec.pub.pem"),
        "private": config.parent / "keys" / "demo.pem",
    }
    files["secret"].write_bytes(secrets.token_bytes(32))
    files["short"].write_bytes(secrets.token_bytes(31))
    argv, fragment = REJECTED_ADDS[case]
    before = config.read_bytes()

    code, out, err = cli(capsys, *argv.format(**files).split(), "--config", config)

    assert_one_line_error(code, err, fragment)
    assert out == ""
    assert config.read_bytes() == before
    assert sorted(p.name for p in config.parent.iterdir()) == [
        ".gitignore",
        "keys",
        "payhub.db",
        "payhub.toml",
    ]


def test_an_add_keeps_the_operators_comments(
    config: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = config.read_text()
    text = text.replace("[portals.demo]", "# the city's portal, owner: Ms Lan\n[portals.demo]")
    text = text.replace('timezone = "Asia/Ho_Chi_Minh"', 'timezone = "Asia/Ho_Chi_Minh"  # fixed')
    config.write_text(text)
    config.chmod(0o640)
    pem, _ = public_key_file(tmp_path, "tinh-bn")

    code, _, err = cli(
        capsys, "portal", "add", "tinh-bn", "--config", config, "--public-key", pem,
        "--callback", "https://dvc.bacninh.example/payhub",
    )  # fmt: skip
    assert (code, err) == (0, "")

    after = config.read_text()
    assert "# the city's portal, owner: Ms Lan\n[portals.demo]" in after
    assert 'timezone = "Asia/Ho_Chi_Minh"  # fixed' in after
    assert "# PayHub local setup written by `payhub init`." in after
    assert after.startswith(text.split("[portals.demo]")[0])
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert set(load_settings(config).portals) == {"demo", "tinh-bn"}


def test_finance_add(config: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pem, key = public_key_file(tmp_path, "ketoan1")
    code, out, err = cli(
        capsys, "finance", "add", "ketoan1", "--config", config, "--public-key", pem
    )
    assert (code, err) == (0, "")
    assert "ketoan1" in out
    [request_key] = load_settings(config).finance_users["ketoan1"].keys
    assert request_key.keyid == "ketoan1"
    assert raw_public(request_key.key) == raw_public(key.public_key())


def test_portal_add_to_a_file_that_is_not_toml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "payhub.toml"
    config.write_text("[hub\n")
    pem, _ = public_key_file(tmp_path, "p")
    code, _, err = cli(
        capsys, "portal", "add", "p", "--config", config, "--public-key", pem,
        "--callback", "https://p.example",
    )  # fmt: skip
    assert_one_line_error(code, err, "not valid TOML")
    assert config.read_text() == "[hub\n"


# --- db upgrade, audit verify ---------------------------------------------------------------


def write_audit_entries(config: Path, count: int) -> None:
    """Extend the audit chain the way the hub does: through the ledger."""

    async def write() -> None:
        engine = create_engine(load_settings(config).database_url)
        ledger = Ledger(engine, system_clock)
        await ledger.start()
        try:
            for n in range(count):

                async def unit(work: UnitOfWork, n: int = n) -> None:
                    work.audit(actor="test", action="note", detail={"n": n})

                await ledger.run(unit)
        finally:
            await ledger.close()
            await engine.dispose()

    asyncio.run(write())


def audit_verify(capsys: pytest.CaptureFixture[str], config: Path) -> tuple[int, dict[str, object]]:
    code, out, err = cli(capsys, "audit", "verify", "--config", config, "--json")
    assert err == ""
    assert out.count("\n") == 1
    report: dict[str, object] = json.loads(out)
    return code, report


def test_db_upgrade_then_audit_verify(upgraded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "audit", "verify", "--config", upgraded)
    assert (code, err) == (0, "")
    assert "ok" in out and "0 entries" in out

    code, out, err = cli(capsys, "db", "upgrade", "--config", upgraded)  # idempotent
    assert (code, err) == (0, "")


def test_audit_verify_json_counts_the_entries(
    upgraded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_audit_entries(upgraded, 3)
    code, report = audit_verify(capsys, upgraded)
    assert code == 0
    assert report["ok"] is True
    assert report["entries"] == 3
    assert report["broken_at"] is None
    assert isinstance(report["head"], str) and len(report["head"]) == 64


def _sql(config: Path, statement: str) -> None:
    with sqlite3.connect(config.parent / "payhub.db") as db:
        assert db.execute(statement).rowcount == 1


def test_audit_verify_fails_after_a_row_is_changed(
    upgraded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_audit_entries(upgraded, 3)
    _sql(upgraded, """UPDATE audit_log SET detail = '{"n": 99}' WHERE seq = 2""")

    code, out, err = cli(capsys, "audit", "verify", "--config", upgraded)
    assert (code, err) == (1, "")
    assert "BROKEN at entry 2" in out

    code, report = audit_verify(capsys, upgraded)
    assert code == 1
    assert (report["ok"], report["entries"], report["broken_at"]) == (False, 1, 2)


@pytest.mark.parametrize(("seq", "broken_at"), [(1, 2), (2, 3), (3, 3)])
def test_audit_verify_fails_after_a_row_is_deleted(
    upgraded: Path, capsys: pytest.CaptureFixture[str], seq: int, broken_at: int
) -> None:
    write_audit_entries(upgraded, 3)
    _sql(upgraded, f"DELETE FROM audit_log WHERE seq = {seq}")
    code, report = audit_verify(capsys, upgraded)
    assert code == 1
    assert report["ok"] is False
    assert report["broken_at"] == broken_at


def test_audit_verify_needs_a_current_schema(
    stale_database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "audit", "verify", "--config", stale_database)
    assert_one_line_error(code, err, "payhub db upgrade", str(stale_database))
    assert out == ""


def test_serve_refuses_a_schema_that_is_not_current(
    stale_database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = stale_database
    code, out, err = cli(capsys, "serve", "--config", config, "--port", free_port())
    assert_one_line_error(code, err, "not current", f"payhub db upgrade --config {config}")
    assert out == ""

    code, out, err = cli(capsys, "db", "upgrade", "--config", config)
    assert (code, err) == (0, "")
    assert current_revision(config) == migrate.head_revision()


def test_serve_turns_a_failed_startup_into_one_line(
    stale_database: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the CLI's own check, the app's startup refuses the schema inside aiohttp."""

    async def no_check(database_url: str, config: Path) -> None:
        return None

    monkeypatch.setattr("payhub.cli._check_database", no_check)
    code, out, err = cli(capsys, "serve", "--config", stale_database, "--port", free_port())
    assert_one_line_error(code, err, "not current", "payhub db upgrade")
    assert out == ""


def test_serve_on_a_port_in_use_is_one_line(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = cli(capsys, "serve", "--config", config, "--port", port, "--simulators")
    assert_one_line_error(code, err, f"127.0.0.1:{port}", "already in use", "--port")
    assert out == ""


def test_simulate_on_a_port_in_use_is_one_line(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = cli(capsys, "simulate", "vnpay", "--config", config, "--port", port)
    assert_one_line_error(code, err, f"127.0.0.1:{port}", "already in use")


def test_serve_on_an_unknown_host_is_one_line(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "serve", "--config", config, "--host", "nowhere.invalid")
    assert_one_line_error(code, err, "cannot listen on nowhere.invalid:")


# --- every command: --help, one-line errors -------------------------------------------------


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(build_parser())


def test_the_contract_commands_exist() -> None:
    for command in ["init", "portal add", "finance add", "serve", "simulate", "db upgrade",
                    "audit verify", "demo", "bench"]:  # fmt: skip
        assert tuple(command.split()) in COMMANDS


def _options(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    """Every argument of every command, named as a user would type it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield f"{parser.prog} {choice.dest}", choice
            for sub in action.choices.values():
                yield from _options(sub)
        elif not isinstance(action, argparse._HelpAction):
            yield f"{parser.prog} {'/'.join(action.option_strings) or action.dest}", action


def test_every_option_and_command_has_a_help_text() -> None:
    options = dict(_options(build_parser()))
    assert len(options) > 30 and "payhub serve --simulators" in options
    assert "payhub portal add --whsec" in options and "payhub db upgrade" in options
    missing = [name for name, action in options.items() if not action.help]
    assert missing == []
    hidden = [name for name, action in options.items() if action.help == argparse.SUPPRESS]
    assert hidden == []


def test_simulate_documents_its_default_port(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = cli(capsys, "simulate", "--help")
    assert f"default {SIMULATE_PORT}" in out
    assert build_parser().parse_args(["simulate", "vnpay", "--config", "c"]).port == SIMULATE_PORT
    _, out, _ = cli(capsys, "--help")
    assert f"port {SIMULATE_PORT}" in out
    assert f"`payhub simulate` listens on port {SIMULATE_PORT}" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "payhub")
def test_every_command_answers_help(
    capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    code, out, err = cli(capsys, *command, "--help")
    assert (code, err) == (0, "")
    assert out.startswith(f"usage: {' '.join(('payhub', *command))}")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "required"),
        (["launch"], "invalid choice"),
        (["serve"], "--config"),
        (["audit", "verify"], "--config"),
        (["db", "upgrade"], "--config"),
        (["db"], "required"),
        (["portal", "add", "p1", "--public-key", "k.pem"], "--config"),
        (["simulate", "vnpay"], "--config"),
        (["serve", "--config", "{nowhere}"], "configuration file not found"),
        (["db", "upgrade", "--config", "{nowhere}"], "configuration file not found"),
        (["audit", "verify", "--config", "{nowhere}"], "configuration file not found"),
        (["simulate", "vnpay", "--config", "{nowhere}"], "configuration file not found"),
        (["serve", "--config", "{bad}"], "not valid TOML"),
        (["audit", "verify", "--config", "{bad}"], "not valid TOML"),
        (["db", "upgrade", "--config", "{bad}"], "not valid TOML"),
        (["serve", "--config", "{bad}", "--port", "99999"], "--port"),
        (["serve", "--config", "{folder}"], "is a folder; --config takes the file"),
        (["db", "upgrade", "--config", "{folder}"], "e.g. {folder}/payhub.toml"),
        (
            ["portal", "add", "p", "--config", "{folder}", "--public-key", "k", "--callback", "u"],
            "is a folder",
        ),
        (["demo", "--payments", "many"], "--payments"),
        (["bench", "--requests", "0"], "at least 1"),
    ],
)
def test_bad_input_exits_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[hub]\ndatabase_url = \n")
    paths = {"nowhere": tmp_path / "nowhere.toml", "bad": bad, "folder": tmp_path}
    code, out, err = cli(capsys, *[arg.format(**paths) for arg in argv])
    assert_one_line_error(code, err, fragment.format(**paths))
    assert out == ""


@pytest.mark.parametrize(
    ("argv", "where"),
    [
        ([], "payhub"),
        (["serve", "--config", "c", "--port", "http"], "payhub serve"),
        (["portal", "add"], "payhub portal add"),
    ],
)
def test_a_usage_error_points_at_the_help(
    capsys: pytest.CaptureFixture[str], argv: list[str], where: str
) -> None:
    code, _, err = cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(code, err, f"(see {where} --help)")


def test_simulate_names_an_unknown_bank(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "simulate", "sacombank", "--config", config)
    assert_one_line_error(code, err, "'sacombank'")


def test_bad_log_level_is_one_line(
    upgraded: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYHUB_LOG_LEVEL", "chatty")
    code, _, err = cli(capsys, "serve", "--config", upgraded)
    assert_one_line_error(code, err, "PAYHUB_LOG_LEVEL")


def test_a_missing_config_in_a_real_process_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "payhub.cli", "audit", "verify", "--config", tmp_path / "x.toml"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert done.returncode == 1
    assert_one_line_error(done.returncode, done.stderr, "configuration file not found")


# --- serve in a real process ----------------------------------------------------------------


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_serve_answers_then_stops_on_sigint(upgraded: Path, tmp_path: Path) -> None:
    settings = load_settings(upgraded)
    base = settings.public_url
    stderr = (tmp_path / "serve.err").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "payhub.cli", "serve", "--config", upgraded, "--simulators"],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, (tmp_path / "serve.err").read_text()
            try:
                if _get(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "serve did not answer /healthz in 15 s"
            time.sleep(0.05)

        assert _get(f"{base}/readyz")[0] == 200
        bank = settings.default_bank
        assert bank is not None
        status, body = _get(f"{base}/sim/{bank}/_sim/faults")
        assert status == 200
        assert isinstance(json.loads(body), dict)

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        stderr.close()
    assert "Traceback" not in (tmp_path / "serve.err").read_text()


# --- demo -----------------------------------------------------------------------------------


def test_demo_json_is_one_document(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "demo", "--payments", 12, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["checks_passed"] is True
    assert summary["dossiers"] == 12
    ipns = summary["ipns"]
    assert ipns["sent"] == ipns["answered"] + ipns["lost"]
    assert sum(ipns["hub_answers"].values()) == ipns["answered"]
    assert ipns["lost"] >= 1  # the scenario "confirmation lost" is among the first 12
    assert {"00", "02", "97"} <= set(ipns["hub_answers"])
    assert summary["statuses"].get("pending", 0) == summary["statuses"].get("unknown", 0) == 0


def test_demo_recovers_what_its_faults_lost(capsys: pytest.CaptureFixture[str]) -> None:
    """26 dossiers over every bank init configured: the MoMo order timeout is among them."""
    code, out, err = cli(capsys, "demo", "--payments", 26, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["checks_passed"] is True
    assert {"vnpay", "momo"} <= set(summary["banks"])
    recovery = summary["recovery"]
    assert recovery["unknown_at_create"] == 1
    # vnpay and momo: at least the lost and the wrong-key confirmations
    assert recovery["recovered_by_query"] >= 4
    # every expired payment expired once; late payers expired before they paid
    assert recovery["expired"] == summary["statuses"]["expired"] + recovery["late_successes"]
    assert summary["statuses"]["expired"] >= 2
    assert "bank times out on the order (unknown, expires)" in summary["skipped_scenarios"]["vnpay"]


def test_demo_ends_with_each_banks_statement_reconciled(capsys: pytest.CaptureFixture[str]) -> None:
    """Every bank's statement of the day is reconciled; the payers who paid twice show up as
    duplicates, everything else matches (recovery already settled the lost confirmations)."""
    code, out, err = cli(capsys, "demo", "--payments", 36, "--json")
    assert code == 0, err
    summary = json.loads(out)
    runs = summary["reconciliation"]
    assert set(runs) == set(summary["banks"])
    assert all(run["status"] == "completed" for run in runs.values())
    matched = sum(run["counts"].get("matched", 0) for run in runs.values())
    paid_twice = sum(
        row["payments"] for name, row in summary["scenarios"].items() if "pays twice" in name
    )
    assert matched == summary["statuses"]["succeeded"]
    assert sum(run["counts"].get("duplicate", 0) for run in runs.values()) == paid_twice


def test_demo_refunds_whose_answers_were_lost_are_made_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """MoMo's is asked again by recovery; VNPay's is settled by finance from the bank's
    records; either way one refund at the bank and one refund.succeeded for the portal."""
    code, out, err = cli(capsys, "demo", "--payments", 12, "--json")
    assert code == 0, err
    summary = json.loads(out)
    refunds = {r["bank"]: r for r in summary["refunds"]}
    assert set(refunds) == {"momo", "vnpay"}
    assert refunds["momo"]["settled_by"] == "recovery"
    assert refunds["vnpay"]["settled_by"] == "finance"
    for refund in refunds.values():
        assert (refund["at_first"], refund["status"], refund["made_at_bank"]) == (
            "pending",
            "succeeded",
            1,
        )
    assert summary["events"]["by_type"]["refund.succeeded"] == 2
    assert summary["checks"]["each refund whose answer was lost was made once and settled"]


def test_demo_says_how_the_ipns_add_up(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "demo", "--payments", 12)
    assert code == 0, err
    tally = re.search(
        r"IPNs the bank sent: (\d+) = (\d+) answered by the hub \+ (\d+) lost on the way", out
    )
    assert tally is not None, out
    sent, answered, lost = map(int, tally.groups())
    assert sent == answered + lost and lost >= 1
    codes = re.search(r"the hub answered ((?:\S+ ×\d+(?:, )?)+)", out)
    assert codes is not None, out
    assert sum(int(n) for n in re.findall(r"×(\d+)", codes.group(1))) == answered


@pytest.mark.parametrize("payments", ["0", "-3"])
def test_demo_without_payments_fails_cleanly(
    capsys: pytest.CaptureFixture[str], payments: str
) -> None:
    code, out, err = cli(capsys, "demo", "--payments", payments, "--json")
    assert_one_line_error(code, err, "--payments")
    assert out == ""
