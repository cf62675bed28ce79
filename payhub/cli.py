"""The ``payhub`` command (CONTRACT §7).

Every command has ``--help`` and exits non-zero with one line on standard error when
its input is bad; ``--json`` output is one JSON document on standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from payhub.errors import ConfigError, PayhubError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


class _Parser(argparse.ArgumentParser):
    """argparse that fails with one line, as every payhub command does."""

    def error(self, message: str) -> Any:
        self.exit(2, f"payhub: {message}\n")


def _port(text: str) -> int:
    """A TCP port, checked by argparse so that a bad one is a one-line usage error."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0–65535)")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="payhub", description="PayHub: payment hub for public-service portals")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    init = commands.add_parser("init", help="write a self-contained local setup in DIR")
    init.add_argument("dir", type=Path)
    init.add_argument("--port", type=_port, default=8080, help="the port serve will listen on")
    init.add_argument("--force", action="store_true", help="overwrite an existing payhub.toml")

    for kind, help_text in (("portal", "portals"), ("finance", "finance users")):
        group = commands.add_parser(kind, help=f"manage {help_text}")
        actions = group.add_subparsers(dest="action", required=True, parser_class=_Parser)
        add = actions.add_parser("add", help=f"add one of the {help_text}; its keyid is ID")
        add.add_argument("id")
        add.add_argument("--config", type=Path, required=True)
        add.add_argument("--public-key", metavar="PEM", help="Ed25519 public key (PEM file)")
        if kind == "portal":
            add.add_argument(
                "--hmac-secret-file", metavar="F", help="file holding the raw HMAC secret bytes"
            )
            add.add_argument("--callback", required=True, metavar="URL")
            add.add_argument("--whsec", metavar="SECRET", help="adds HMAC v1 webhook signatures")

    serve = commands.add_parser("serve", help="run the hub")
    serve.add_argument("--config", type=Path, required=True)
    serve.add_argument("--host")
    serve.add_argument("--port", type=_port)
    serve.add_argument(
        "--simulators", action="store_true", help="also serve the bank simulators at /sim/<bank>/"
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="share the port with other hub processes (SO_REUSEPORT), one per core",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N hub processes sharing the port (default 1); not with --simulators",
    )

    simulate = commands.add_parser("simulate", help="run one bank simulator on its own")
    simulate.add_argument("bank")
    simulate.add_argument("--config", type=Path, required=True)
    simulate.add_argument("--port", type=_port, default=8090)
    simulate.add_argument("--host", default="127.0.0.1")

    db = commands.add_parser("db", help="database schema")
    db_actions = db.add_subparsers(dest="action", required=True, parser_class=_Parser)
    upgrade = db_actions.add_parser("upgrade", help="apply migrations")
    upgrade.add_argument("--config", type=Path, required=True)

    audit = commands.add_parser("audit", help="the audit trail")
    audit_actions = audit.add_subparsers(dest="action", required=True, parser_class=_Parser)
    verify = audit_actions.add_parser("verify", help="check the hash chain; non-zero if broken")
    verify.add_argument("--config", type=Path, required=True)
    verify.add_argument("--json", action="store_true")

    demo = commands.add_parser("demo", help="the whole world on a temporary SQLite database")
    demo.add_argument("--payments", type=int, default=36, help="how many dossiers to pay")
    demo.add_argument("--json", action="store_true")

    bench = commands.add_parser(
        "bench",
        help="signed creates (Ed25519 and HMAC portals) and VNPay confirmations per second, "
        "against bare aiohttp and the load generator's own ceiling",
    )
    bench.add_argument(
        "--requests", type=int, default=5000, help="requests per scenario (default 5000)"
    )
    bench.add_argument(
        "--concurrency", type=int, default=64, help="requests in flight (default 64)"
    )
    bench.add_argument(
        "--workers", type=int, default=1, help="serve --workers for the hub (default 1)"
    )
    bench.add_argument(
        "--preload",
        type=int,
        default=0,
        metavar="N",
        help="also measure with N payments (and their events and audit entries) stored",
    )
    bench.add_argument(
        "--database-url", help="PostgreSQL URL (its payhub tables are dropped!); default SQLite"
    )
    bench.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (PayhubError, OSError) as exc:
        print(f"payhub: {_one_line(exc)}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        # The driver's own error says what went wrong; SQLAlchemy's wrapper adds the SQL.
        cause = getattr(exc, "orig", None) or exc
        print(f"payhub: database error: {_one_line(cause)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines) or type(exc).__name__


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "init":
        from payhub.setup import init_setup

        path = init_setup(args.dir, port=args.port, force=args.force)
        print(
            f"wrote {path}; start it with: payhub db upgrade --config {path} && "
            f"payhub serve --config {path} --simulators"
        )
        return 0
    if command in ("portal", "finance"):
        from payhub.setup import add_principal

        if command == "portal" and (args.public_key is None) == (args.hmac_secret_file is None):
            raise ConfigError("give exactly one of --public-key PEM or --hmac-secret-file F")
        if command == "finance" and args.public_key is None:
            raise ConfigError("give --public-key PEM")
        add_principal(
            args.config,
            "portals" if command == "portal" else "finance",
            args.id,
            public_key=args.public_key,
            hmac_secret_file=getattr(args, "hmac_secret_file", None),
            callback=getattr(args, "callback", None),
            whsec=getattr(args, "whsec", None),
        )
        print(f"added {command} {args.id} to {args.config}")
        return 0
    if command == "serve":
        _configure_logging(level=_log_level())
        return _serve(args)
    if command == "simulate":
        _configure_logging(level=_log_level())
        return _simulate(args)
    if command == "db":
        _configure_logging(level=_log_level())
        return asyncio.run(_db_upgrade(args.config))
    if command == "audit":
        _configure_logging(level=_log_level())
        return asyncio.run(_audit_verify(args.config, as_json=args.json))
    if command == "demo":
        _configure_logging(json=True, level=logging.ERROR)
        from payhub.demo import run_demo

        return asyncio.run(run_demo(payments=args.payments, as_json=args.json))
    if command == "bench":
        _configure_logging(json=True, level=logging.ERROR)
        from payhub.bench import run_bench

        if args.requests < 1 or args.concurrency < 1 or args.workers < 1 or args.preload < 0:
            raise ConfigError(
                "--requests, --concurrency and --workers must be at least 1, --preload at least 0"
            )
        return asyncio.run(
            run_bench(
                requests=args.requests,
                concurrency=args.concurrency,
                workers=args.workers,
                database_url=args.database_url,
                as_json=args.json,
                preload=args.preload,
            )
        )
    raise ConfigError(f"unknown command {command}")  # pragma: no cover - argparse guards


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from payhub.app import create_app
    from payhub.settings import load_settings

    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if args.workers > 1 and args.simulators:
        raise ConfigError("--simulators keeps its banks in memory: run it with one worker")
    settings = load_settings(args.config)
    asyncio.run(_check_database(settings.database_url, args.config))
    if args.workers > 1:
        from payhub.workers import run_workers, worker_command

        return run_workers(worker_command(str(args.config), args.host, args.port), args.workers)
    app = create_app(settings, simulators=args.simulators, freeze_at_start=True)
    web.run_app(
        app,
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        access_log=None,
        reuse_port=args.reuse_port or None,
        print=lambda text: print(text, file=sys.stderr),
    )
    return 0


def _configure_logging(*, level: int, json: bool | None = None) -> None:
    from payhub.observability.logging import configure_logging

    configure_logging(json=json, level=level)
    # Alembic narrates every connection at INFO: noise around a command's one-line answer.
    logging.getLogger("alembic").setLevel(logging.WARNING if level >= logging.INFO else level)


def _log_level() -> int:
    """``PAYHUB_LOG_LEVEL`` (debug, info, warning, error); info by default."""
    name = os.environ.get("PAYHUB_LOG_LEVEL", "info").upper()
    level = logging.getLevelName(name)
    if not isinstance(level, int):
        raise ConfigError(f"PAYHUB_LOG_LEVEL={name.lower()} is not a log level")
    return level


def _simulate(args: argparse.Namespace) -> int:
    from aiohttp import web

    from payhub.app import notify_url, simulator_factory
    from payhub.settings import load_settings

    settings = load_settings(args.config)
    bank = settings.banks.get(args.bank)
    if bank is None:
        raise ConfigError(f"no bank {args.bank!r} in {args.config}")
    factory = simulator_factory(bank.connector)
    app = factory(bank.options, notify_url=notify_url(settings, args.bank))
    web.run_app(app, host=args.host, port=args.port, access_log=None)
    return 0


async def _db_upgrade(config: Path) -> int:
    from payhub.settings import load_settings
    from payhub.store import migrate
    from payhub.store.engine import create_engine

    settings = load_settings(config)
    engine = create_engine(settings.database_url)
    try:
        await migrate.upgrade(engine)
        revision = await migrate.current_revision(engine)
    finally:
        await engine.dispose()
    print(f"database at revision {revision}")
    return 0


async def _check_database(database_url: str, config: Path) -> None:
    """Fail before serving when the database is unreachable or its schema is old."""
    from payhub.store.engine import create_engine

    engine = create_engine(database_url)
    try:
        await _require_current_schema(engine, config)
    finally:
        await engine.dispose()


async def _require_current_schema(engine: AsyncEngine, config: Path) -> None:
    from payhub.store import migrate

    if not await migrate.is_current(engine):
        raise ConfigError(
            f"the database schema is not current: run `payhub db upgrade --config {config}`"
        )


async def _audit_verify(config: Path, *, as_json: bool) -> int:
    from payhub.settings import load_settings
    from payhub.store.audit import verify_chain
    from payhub.store.engine import create_engine

    settings = load_settings(config)
    engine = create_engine(settings.database_url)
    try:
        await _require_current_schema(engine, config)
        report = await verify_chain(engine)
    finally:
        await engine.dispose()
    if as_json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "entries": report.entries,
                    "head": report.head,
                    "broken_at": report.broken_at,
                    "reason": report.reason or None,
                }
            )
        )
    elif report.ok:
        print(f"audit chain ok: {report.entries} entries, head {report.head}")
    else:
        print(f"audit chain BROKEN at entry {report.broken_at}: {report.reason}")
    return 0 if report.ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
