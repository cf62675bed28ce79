"""The ``payhub`` command (CONTRACT §7).

Every command has ``--help`` and exits non-zero with one line on standard error when
its input is bad; ``--json`` output is one JSON document on standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from payhub.errors import ConfigError, PayhubError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from payhub.settings import Settings


class _Parser(argparse.ArgumentParser):
    """argparse that fails with one line, as every payhub command does."""

    def error(self, message: str) -> Any:
        self.exit(2, f"payhub: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    """A TCP port, checked by argparse so that a bad one is a one-line usage error."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0–65535)")
    return port


SIMULATE_PORT = 8090
"""``payhub simulate``'s port when ``--port`` is not given."""

SERVE_EPILOG = """\
With --simulators the hub also serves each bank's simulator at /sim/<bank>/, and the
addresses banks and payers are given (payment URLs, the simulators' confirmations to the
hub) follow the address this server really listens on, whatever port `init` wrote.
Without --simulators, hub.public_url is where banks send confirmations.
Port 0 picks a free port (printed at start). SIGHUP re-reads the portals, finance users
and hub keys of the configuration (after `portal add`, `finance add`, `keys rotate`);
other changes need a restart, and the log says which."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="payhub", description="PayHub: payment hub for public-service portals")
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, metavar="COMMAND"
    )

    init = commands.add_parser(
        "init",
        help="write a self-contained local setup in DIR, ready for serve",
        description="Write DIR/payhub.toml, a migrated SQLite database DIR/payhub.db, the hub's "
        "signing key and a portal `demo` and finance user `finance` with fresh Ed25519 keys "
        "(DIR/keys/), every installed bank pointed at its simulator, and DIR/.gitignore "
        "keeping the private keys and the database out of version control.",
    )
    init.add_argument("dir", type=Path, metavar="DIR", help="folder to write (created if missing)")
    init.add_argument(
        "--port",
        type=_port,
        default=8080,
        help="the port serve will listen on, written into payhub.toml (default 8080)",
    )
    init.add_argument(
        "--force", action="store_true", help="overwrite an existing payhub.toml and its keys"
    )

    for kind, help_text in (("portal", "portals"), ("finance", "finance users")):
        group = commands.add_parser(kind, help=f"manage {help_text}")
        actions = group.add_subparsers(
            dest="action", required=True, parser_class=_Parser, metavar="ACTION"
        )
        add = actions.add_parser(
            "add",
            help=f"add one of the {help_text}; its keyid is ID",
            description=f"Add one of the {help_text} to the configuration file; the key's "
            "keyid is ID. A running serve takes it on SIGHUP (kill -HUP <pid>) or a restart.",
        )
        add.add_argument("id", metavar="ID", help="its id, also the keyid it signs with")
        add.add_argument("--config", type=Path, required=True, help="the payhub.toml to edit")
        add.add_argument("--public-key", metavar="PEM", help="Ed25519 public key (PEM file)")
        if kind == "portal":
            add.add_argument(
                "--hmac-secret-file",
                metavar="F",
                help="file holding the raw HMAC-SHA256 secret bytes (at least 32)",
            )
            add.add_argument(
                "--callback", required=True, metavar="URL", help="where its events are posted"
            )
            add.add_argument(
                "--whsec", metavar="SECRET", help="whsec_… secret: adds HMAC v1 webhook signatures"
            )
        else:
            _finance_login_parser(actions)

    serve = commands.add_parser(
        "serve",
        help="run the hub",
        description="Run the hub. Refuses a database whose schema is not current.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--config", type=Path, required=True, help="the payhub.toml to serve")
    serve.add_argument("--host", help="address to listen on (default: hub.host of the config)")
    serve.add_argument(
        "--port", type=_port, help="port to listen on (default: hub.port of the config; 0: any)"
    )
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

    simulate = commands.add_parser(
        "simulate",
        help=f"run one bank simulator on its own (port {SIMULATE_PORT})",
        description="Run BANK's simulator on its own server, at its root, sending its "
        "confirmations to the hub's hub.public_url. The hub sends payers to it only when the "
        "bank's URL in payhub.toml (for VNPay, banks.<bank>.base_url) is this server's address.",
    )
    simulate.add_argument("bank", metavar="BANK", help="a bank name of the config, e.g. vnpay")
    simulate.add_argument(
        "--config", type=Path, required=True, help="the payhub.toml naming the bank"
    )
    simulate.add_argument(
        "--port",
        type=_port,
        default=SIMULATE_PORT,
        help=f"port to listen on (default {SIMULATE_PORT}; 0: any)",
    )
    simulate.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )

    db = commands.add_parser("db", help="database schema")
    db_actions = db.add_subparsers(
        dest="action", required=True, parser_class=_Parser, metavar="ACTION"
    )
    upgrade = db_actions.add_parser(
        "upgrade",
        help="apply migrations",
        description="Bring the database to the newest schema (init does it for its own "
        "SQLite database; run it after an upgrade of PayHub or for another database).",
    )
    upgrade.add_argument("--config", type=Path, required=True, help="the payhub.toml to migrate")

    audit = commands.add_parser("audit", help="the audit trail")
    audit_actions = audit.add_subparsers(
        dest="action", required=True, parser_class=_Parser, metavar="ACTION"
    )
    verify = audit_actions.add_parser("verify", help="check the hash chain; non-zero if broken")
    verify.add_argument("--config", type=Path, required=True, help="the payhub.toml to check")
    verify.add_argument("--json", action="store_true", help="one JSON document on stdout")

    _add_notification_commands(commands)
    _add_refund_commands(commands)
    _reconcile_parser(commands)

    demo = commands.add_parser("demo", help="the whole world on a temporary SQLite database")
    demo.add_argument(
        "--payments", type=int, default=36, help="how many dossiers to pay (default 36)"
    )
    demo.add_argument("--json", action="store_true", help="one JSON document on stdout")

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
        "--deliver",
        action="store_true",
        help="also measure webhook delivery: outbox throughput and confirmation-to-webhook latency",
    )
    bench.add_argument(
        "--database-url", help="PostgreSQL URL (its payhub tables are dropped!); default SQLite"
    )
    bench.add_argument("--json", action="store_true", help="one JSON document on stdout")
    bench.add_argument(
        "--scenario",
        choices=("create", "reconcile"),
        default="create",
        help="create: signed creates (default); reconcile: a --lines statement against as "
        "many payments",
    )
    bench.add_argument(
        "--lines",
        type=int,
        default=1_000_000,
        help="statement lines and payments of the reconcile scenario (default 1,000,000)",
    )
    return parser


def _add_notification_commands(commands: Any) -> None:
    """``payhub events …`` and ``payhub keys rotate`` (CONTRACT §4, §7)."""
    events = commands.add_parser("events", help="portal notifications (webhooks)")
    actions = events.add_subparsers(
        dest="action", required=True, parser_class=_Parser, metavar="ACTION"
    )
    replay = actions.add_parser(
        "replay",
        help="deliver dead (or named) events again, audited",
        description="Put events back in the delivery queue with a fresh retry schedule: "
        "every dead event (--dead) or the events named. They keep their id, so a portal "
        "that already has one drops the copy. Each replay is written to the audit trail.",
    )
    replay.add_argument("--config", type=Path, required=True, help="the payhub.toml to use")
    replay.add_argument("--dead", action="store_true", help="replay every dead event")
    replay.add_argument("event_ids", nargs="*", metavar="EVENT_ID", help="events to replay")
    replay.add_argument("--json", action="store_true", help="one JSON document on stdout")
    dead = actions.add_parser("dead", help="list the dead events, ready for replay")
    dead.add_argument("--config", type=Path, required=True, help="the payhub.toml to use")
    dead.add_argument("--json", action="store_true", help="one JSON document on stdout")
    enable = actions.add_parser(
        "enable",
        help="send to a portal again after its callback answered 410 Gone",
        description="Re-enable a portal's endpoint that answered 410 Gone; its waiting "
        "events are sent at once. Audited.",
    )
    enable.add_argument("--config", type=Path, required=True, help="the payhub.toml to use")
    enable.add_argument("--portal", required=True, metavar="ID", help="the portal to enable")
    send_test = actions.add_parser(
        "send-test",
        help="send a signed ping event to a portal's callback and say what happened",
        description="POST one signed `ping` event (never retried, not in /v1/events) to the "
        "portal's callback URL and print the status, the latency, any redirect and "
        "whether the answer came within the 15 s the hub waits. Exits 1 unless 2xx.",
    )
    send_test.add_argument("--config", type=Path, required=True, help="the payhub.toml to use")
    send_test.add_argument("--portal", required=True, metavar="ID", help="the portal to ping")
    send_test.add_argument("--json", action="store_true", help="one JSON document on stdout")

    keys = commands.add_parser("keys", help="the hub's webhook signing keys")
    key_actions = keys.add_subparsers(
        dest="action", required=True, parser_class=_Parser, metavar="ACTION"
    )
    rotate = key_actions.add_parser(
        "rotate",
        help="make a new current hub key; the old one stays published a while",
        description="Write a new Ed25519 hub key (keys/<kid>.pem, mode 0600) and make it the "
        "current one. The previous key stays in the JWKS and keeps signing v1a for 7 days "
        "(its expires_at in payhub.toml), so webhooks carry both signatures meanwhile. "
        "Keys whose overlap has ended leave the configuration. A running serve takes the "
        "new key on SIGHUP (kill -HUP <pid>) or a restart.",
    )
    rotate.add_argument("--config", type=Path, required=True, help="the payhub.toml to edit")


def _add_refund_commands(commands: Any) -> None:
    """``payhub refunds pending|settle``: refunds a bank never answered about."""
    refunds = commands.add_parser("refunds", help="refunds still waiting for their bank's word")
    actions = refunds.add_subparsers(
        dest="action", required=True, parser_class=_Parser, metavar="ACTION"
    )
    pending = actions.add_parser(
        "pending",
        help="list pending refunds and whether recovery still asks their bank",
        description="List refunds whose bank has not answered, oldest first. Recovery asks "
        "a bank that can tell (MoMo) again on its schedule; a bank that cannot (VNPay: "
        "asking again could refund twice) leaves the refund to you: check the bank's own "
        "records, then `payhub refunds settle`.",
    )
    pending.add_argument("--config", type=Path, required=True, help="the payhub.toml to use")
    pending.add_argument("--json", action="store_true", help="one JSON document on stdout")
    settle = actions.add_parser(
        "settle",
        help="settle a pending refund from the bank's own records, audited",
        description="Mark a pending refund succeeded or failed as the bank's records show "
        "it (its merchant portal, its statement). The portal gets refund.succeeded or "
        "refund.failed; the audit trail records the note. A refund settled meanwhile is "
        "left as it is (exit 1).",
    )
    settle.add_argument("refund_id", metavar="REFUND_ID", help="the refund, rfd_…")
    settle.add_argument("--config", type=Path, required=True, help="the payhub.toml to use")
    outcome = settle.add_mutually_exclusive_group(required=True)
    outcome.add_argument("--succeeded", action="store_true", help="the bank refunded the payer")
    outcome.add_argument("--failed", action="store_true", help="the bank made no refund")
    settle.add_argument(
        "--note", required=True, help="where the outcome comes from (kept in the audit trail)"
    )
    settle.add_argument(
        "--bank-refund-id", metavar="ID", help="the bank's id of the refund, when it made one"
    )


def _refunds(args: argparse.Namespace) -> int:
    from payhub import operations
    from payhub.domain.clock import rfc3339
    from payhub.settings import load_settings

    settings = load_settings(args.config)
    if args.action == "pending":
        found = asyncio.run(operations.pending_refunds(settings))
        rows = [
            {
                **item.refund.to_public(),
                "bank": item.bank,
                "portal": item.portal_id,
                "asked_again_at": rfc3339(item.asked_again_at) if item.asked_again_at else None,
            }
            for item in found
        ]
        if args.json:
            print(json.dumps({"data": rows}))
            return 0
        for row in rows:
            asked = row["asked_again_at"]
            then = (
                f"recovery looks at it at {asked}"
                if asked
                else "its bank cannot be asked: settle it by hand from the bank's records"
            )
            print(
                f"{row['id']}  {row['payment_id']}  {row['bank']}  {row['amount']:,} VND  "
                f"requested {row['created_at']}  {then}"
            )
        print(f"{len(rows)} pending refund(s)")
        return 0
    refund = asyncio.run(
        operations.settle_refund(
            settings,
            args.refund_id,
            succeeded=args.succeeded,
            bank_refund_id=args.bank_refund_id,
            note=args.note,
        )
    )
    print(f"refund {refund.id} {refund.status}; the portal is told (refund.{refund.status})")
    return 0


def _notifications(args: argparse.Namespace) -> int:
    from payhub.settings import load_settings

    if args.command == "keys":
        from payhub.setup import rotate_hub_key

        rotation = rotate_hub_key(args.config)
        print(
            f"new current hub key {rotation.new_kid}; "
            "a running serve takes it on SIGHUP (kill -HUP <pid>) or a restart"
        )
        for kid, ends in rotation.overlapping:
            print(f"  {kid} still published and signing until {ends.isoformat()}")
        for kid in rotation.dropped:
            print(f"  {kid} removed (its overlap had ended)")
        return 0
    from payhub.notify import operations

    settings = load_settings(args.config)
    if args.action == "replay":
        if args.dead == bool(args.event_ids):
            raise ConfigError("give either --dead or one or more EVENT_IDs")
        report = asyncio.run(operations.replay(settings, args.event_ids, dead=args.dead))
        if args.json:
            print(json.dumps(dataclasses.asdict(report)))
        else:
            print(f"replayed {len(report.replayed)} event(s)")
            for event_id in report.already_pending:
                print(f"  {event_id}: still being delivered, left as it is")
            for event_id in report.unknown:
                print(f"  {event_id}: no such event")
        return 1 if report.unknown else 0
    if args.action == "dead":
        found = asyncio.run(operations.dead_events(settings))
        if args.json:
            print(json.dumps({"data": found}))
        else:
            for event in found:
                print(f"{event['id']}  {event['portal']}  {event['type']}  {event['created_at']}")
            print(f"{len(found)} dead event(s)")
        return 0
    if args.action == "enable":
        if asyncio.run(operations.enable(settings, args.portal)):
            print(f"portal {args.portal} enabled; its waiting events are sent now")
        else:
            print(f"portal {args.portal} was not disabled")
        return 0
    ping = asyncio.run(operations.send_test(settings, args.portal))
    if args.json:
        print(json.dumps(ping.as_dict()))
    else:
        status = ping.status if ping.status is not None else "no answer"
        print(f"ping {ping.webhook_id} to {ping.url}: {status} in {ping.latency_ms} ms")
        for hop in ping.redirects:
            print(f"  redirects to {hop} (the hub does not follow redirects: a 3xx is a failure)")
        if ping.error:
            print(f"  error: {ping.error}")
        if ping.status is not None:
            print("  answered in time" if ping.in_time else "  NOT answered within 15 s")
        print("  ok: the hub counts this as delivered" if ping.ok else "  the hub would retry")
    return 0 if ping.ok else 1


def _reconcile_parser(commands: Any) -> None:
    reconcile = commands.add_parser(
        "reconcile",
        help="reconcile a bank's statement for one business day",
        description="Match a bank's statement for business day D (Asia/Ho_Chi_Minh) against "
        "the hub's payments: lost confirmations are settled, every other difference becomes "
        "an exception for the finance page. Running the same statement again changes nothing. "
        "Exits 1 when the statement cannot be read (no payment is changed then).",
    )
    reconcile.add_argument("statement", type=Path, metavar="STATEMENT", help="the statement file")
    reconcile.add_argument("--config", type=Path, required=True, help="the hub's payhub.toml")
    reconcile.add_argument("--bank", required=True, metavar="B", help="a configured bank name")
    reconcile.add_argument(
        "--date", required=True, metavar="YYYY-MM-DD", help="the statement's business day"
    )
    reconcile.add_argument(
        "--format",
        choices=("text", "csv", "json", "html"),
        default="text",
        help="report format (default text; csv has one line per statement line and per "
        "payment missing from it)",
    )
    reconcile.add_argument("--out", type=Path, metavar="F", help="write the report to F")
    reconcile.add_argument(
        "--statement-format",
        metavar="NAME",
        help="vnpay-csv, momo-csv, mt940 or camt.053 (default: the bank's usual format)",
    )


def _finance_login_parser(actions: Any) -> None:
    login = actions.add_parser(
        "login",
        help="print a short-lived link that opens the finance page",
        description="Print a link to the hub's finance page (runs, totals, exceptions, the "
        "resolve action) that signs USER in. It works once, for --minutes; the page then "
        "keeps an 8-hour session cookie.",
    )
    login.add_argument("--config", type=Path, required=True, help="the hub's payhub.toml")
    login.add_argument(
        "--user", default="finance", help="the finance user to sign in (default finance)"
    )
    login.add_argument(
        "--minutes", type=int, default=10, help="how long the link works (default 10, at most 60)"
    )
    login.add_argument(
        "--url",
        metavar="URL",
        help="the hub's address as the browser reaches it (default hub.public_url; give it "
        "when serve listens elsewhere, e.g. http://127.0.0.1:9000)",
    )


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
        _configure_logging(level=_log_level())
        return _init(args)
    if command == "finance" and args.action == "login":
        from payhub.reconcile.command import finance_login

        return finance_login(
            config=args.config, user=args.user, minutes=args.minutes, base_url=args.url
        )
    if command == "reconcile":
        _configure_logging(level=logging.WARNING)
        from payhub.reconcile.command import run_reconcile

        return run_reconcile(
            config=args.config,
            bank=args.bank,
            day=args.date,
            statement=args.statement,
            output=args.format,
            out=args.out,
            statement_format=args.statement_format,
        )
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
        print(
            f"added {command} {args.id} to {args.config}; "
            "a running serve takes it on SIGHUP (kill -HUP <pid>) or a restart"
        )
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
    if command in ("events", "keys"):
        _configure_logging(level=_log_level())
        return _notifications(args)
    if command == "refunds":
        _configure_logging(level=_log_level())
        return _refunds(args)
    if command == "demo":
        _configure_logging(json=True, level=logging.ERROR)
        from payhub.demo import run_demo

        return asyncio.run(run_demo(payments=args.payments, as_json=args.json))
    if command == "bench":
        _configure_logging(json=True, level=logging.ERROR)
        from payhub.bench import run_bench

        if args.scenario == "reconcile":
            from payhub.reconcile.bench import run_reconcile_bench

            return run_reconcile_bench(lines=max(args.lines, 1), as_json=args.json)

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
                deliver=args.deliver,
            )
        )
    raise ConfigError(f"unknown command {command}")  # pragma: no cover - argparse guards


def _init(args: argparse.Namespace) -> int:
    from payhub.settings import load_settings
    from payhub.setup import init_setup, private_key_files

    path = init_setup(args.dir, port=args.port, force=args.force)
    revision = asyncio.run(_upgrade(path))
    folder = path.parent
    database = load_settings(path).database_url.split(":///", 1)[1]
    secret = ", ".join(str(key.relative_to(folder)) for key in private_key_files(folder))
    print(f"wrote {path} and its SQLite database {database}, migrated (revision {revision})")
    print(f"private keys in {folder}, to keep secret: {secret}")
    print(f"  ({folder / '.gitignore'} keeps them and the database out of git)")
    print(f"start it with: {_program()} serve --config {path} --simulators")
    return 0


def _program() -> str:
    """``payhub`` as the user can type it: the path they used when it is not on the PATH."""
    used = Path(sys.argv[0])
    if used.name != "payhub":
        return "payhub"
    on_path = shutil.which("payhub")
    return "payhub" if on_path and Path(on_path).resolve() == used.resolve() else str(used)


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from payhub.app import create_app, served_at, simulator_options
    from payhub.settings import load_settings

    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if args.workers > 1 and args.simulators:
        raise ConfigError("--simulators keeps its banks in memory: run it with one worker")
    # Until the hub's own handler is in place a SIGHUP (a reload) must not end the process,
    # as it would by default; the file is read just below anyway.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    settings = load_settings(args.config)
    asyncio.run(_check_database(settings.database_url, args.config))
    if args.workers > 1:
        from payhub.workers import run_workers, worker_command

        return run_workers(worker_command(str(args.config), args.host, args.port), args.workers)
    port = args.port if args.port is not None else settings.port
    file_settings = settings
    sock = _listen(args.host or settings.host, port, reuse_port=args.reuse_port)
    try:
        url = _url_of(sock)
        notes: list[str] = []
        if args.simulators:
            configured = settings.public_url
            settings = served_at(settings, url)
            notes += [f"simulator {bank}: {url}/sim/{bank}/" for bank in settings.banks]
            if configured != url:
                notes.append(
                    f"payers and simulators use {url}, where this server listens "
                    f"(hub.public_url in {args.config} says {configured})"
                )
        else:
            notes += [
                f"warning: {line}"
                for line in _address_warnings(settings, url, simulator_options(settings))
            ]
        app = create_app(
            settings,
            simulators=args.simulators,
            freeze_at_start=True,
            reload_on_sighup=True,
            file_settings=file_settings,
        )
        web.run_app(app, sock=sock, access_log=None, print=_after_start(notes))
    finally:
        sock.close()

    return 0


def _after_start(notes: list[str]) -> Callable[[str], None]:
    """aiohttp's start-up line on stderr, after ``notes``: nothing is said before it starts."""

    def say(text: str) -> None:
        for note in notes:
            print(note, file=sys.stderr)
        print(text, file=sys.stderr)

    return say


def _listen(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """The bound listening socket, made before the app so that its URLs can name it.

    With the socket in hand, ``--port 0`` has a known port to give banks and payers, and a
    port already taken is one clear line rather than a traceback from inside aiohttp.
    """
    where = _authority(host, port)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {where}: {exc.strerror}") from exc
    found.sort(key=lambda info: info[0] != socket.AF_INET)  # `localhost`: IPv4 first
    family, kind, protocol, _, address = found[0]
    sock = socket.socket(family, kind, protocol)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"cannot listen on {where}: the port is already in use "
                "(another payhub serve? choose another --port)"
            ) from exc
        raise ConfigError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
    return sock


def _url_of(sock: socket.socket) -> str:
    """The http URL that reaches ``sock``; a wildcard address is reached on loopback."""
    from yarl import URL

    host, port = sock.getsockname()[:2]
    if ipaddress.ip_address(host).is_unspecified:
        host = "127.0.0.1" if sock.family == socket.AF_INET else "::1"
    return str(URL.build(scheme="http", host=host, port=port))


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _address_warnings(
    settings: Settings, url: str, simulated: Mapping[str, list[str]]
) -> list[str]:
    """What will not work when serving at ``url`` without the simulators mounted."""
    warnings = [
        f"banks.{bank}.{option} points at {settings.banks[bank].options[option]}, which only "
        "`serve --simulators` serves: its payers cannot pay"
        for bank, options in simulated.items()
        for option in options
    ]
    public = urlsplit(settings.public_url)
    served = urlsplit(url)
    if _is_loopback(public.hostname) and (public.hostname, public.port) != (
        served.hostname,
        served.port,
    ):
        warnings.append(
            f"hub.public_url is {settings.public_url}, but this server listens on {url}: "
            "banks send their confirmations to hub.public_url"
        )
    return warnings


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    confirmations = notify_url(settings, args.bank)
    sock = _listen(args.host, args.port)
    try:
        url = _url_of(sock)
        app = factory(bank.options, notify_url=confirmations)
        notes = [f"simulator {args.bank} at {url}/, sending confirmations to {confirmations}"]
        urls = {k: v for k, v in bank.options.items() if isinstance(v, str) and "://" in v}
        if urls and not any(v.startswith(url) for v in urls.values()):
            option, value = next(iter(urls.items()))
            notes.append(
                f"warning: the hub sends payers to banks.{args.bank}.{option} = {value}; "
                f"set it to {url} for them to reach this simulator"
            )
        web.run_app(app, sock=sock, access_log=None, print=_after_start(notes))
    finally:
        sock.close()
    return 0


async def _db_upgrade(config: Path) -> int:
    revision = await _upgrade(config)
    print(f"database at revision {revision}")
    return 0


async def _upgrade(config: Path) -> str | None:
    from payhub.settings import load_settings
    from payhub.store import migrate
    from payhub.store.engine import create_engine

    settings = load_settings(config)
    engine = create_engine(settings.database_url)
    try:
        await migrate.upgrade(engine)
        return await migrate.current_revision(engine)
    finally:
        await engine.dispose()


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
