"""``payhub bench``: the hub as a user runs it, against bare aiohttp, with one load generator.

The hub is started the way ``payhub serve`` starts it from a config written by ``payhub
init``: default log level (every access line masked and written), default settings. The
scenarios, all in one run and with the same generator:

* ``ceiling``: the generator against a server that answers a constant, so the generator's
  own limit is known (a ratio close to it measures the generator, not the server);
* ``baseline``: bare aiohttp reading the body, parsing the JSON and answering 201;
* ``floor-ed25519`` and ``floor-hmac``: the baseline plus the portal's RFC 9421 signature
  checked by the hub's own ``authenticate`` (digest, coverage, clock, signature, nonce in
  memory): nothing validated, nothing stored;
* ``floor-durable``: HMAC-signed creates, checked, validated by the hub's own
  declarations and stored with their Idempotency-Key in one durable commit of the hub's
  own ledger, and nothing else (no audit entry, no bank order, no log line, no limit):
  the least a conforming create does, so its ratio bounds what any create on this stack
  can reach on this machine;
* ``create-ed25519`` and ``create-hmac``: signed creates from an Ed25519 and an HMAC portal,
  each a durable payment with its VNPay order, event and audit entry;
* ``confirm``: signed VNPay IPNs for those payments, sent straight to the hub, each applied,
  audited and evented.

Every request is built and signed before the clock starts. Every answer is checked (status
and body) and counted wrong if it is not the contract's; after the hub is stopped, every
answered payment and confirmation is looked up in the database, so an answer the ledger
did not commit is counted too. Any wrong answer makes the command fail.

``--preload N`` first measures the empty database, then stores N payments (with their
events and audit entries, the chain kept valid) by bulk inserts cloned from rows the hub
itself wrote, restarts the hub and measures again: the ratios must not move with the data.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import tempfile
import time
import uuid
from asyncio.subprocess import Process
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from payhub.bench_load import HttpConnection, Outcome, http_request, send_all
from payhub.errors import ConfigError
from payhub.notify.measure import PORTAL_SOURCE
from payhub.portal.client import encode_json, sign_headers

BASELINE_SOURCE = """
import json, sys
from aiohttp import web

async def create(request):
    body = json.loads(await request.read())
    return web.json_response({"id": "pay_x", "amount": body["amount"]}, status=201)

app = web.Application()
app.router.add_post("/v1/payments", create)
app.router.add_get("/readyz", lambda request: web.Response(text="ok"))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), reuse_port=True, access_log=None,
            print=None)
"""

FLOOR_SOURCE = """
import json, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from payhub.api.auth import Credential, MemoryNonceStore, PrincipalKind, SignedRequest, authenticate
from payhub.api.schemas import parse_payment_request
from payhub.domain.clock import system_clock
from payhub.domain.ids import new_id
from payhub.domain.payment import Payment
from payhub.domain.reference import new_bank_reference
from payhub.domain.states import PaymentStatus
from payhub.errors import ProblemError
from payhub.service.unit_of_work import IdempotencyRecord, NewPayment
from payhub.store import migrate
from payhub.store.engine import create_engine
from payhub.store.ledger import Ledger

keys = Path(sys.argv[2])
demo = serialization.load_pem_private_key((keys / "demo.pem").read_bytes(), None)
secret = (keys / "%(hmac)s.secret").read_bytes()
credentials = {
    "demo": Credential("demo", PrincipalKind.PORTAL, "demo", "ed25519", demo.public_key()),
    "%(hmac)s": Credential("%(hmac)s", PrincipalKind.PORTAL, "%(hmac)s", "hmac-sha256", secret),
}
nonces = MemoryNonceStore()
engine = create_engine("sqlite+aiosqlite:///" + sys.argv[3])
ledger = Ledger(engine, system_clock)


async def create(request):
    body = await request.read()
    signed = SignedRequest.from_aiohttp(request, body)
    try:
        await authenticate(signed, credentials, nonces, datetime.now(UTC))
    except ProblemError as problem:
        return web.json_response({"code": problem.code}, status=problem.status)
    body = json.loads(body)
    return web.json_response({"id": "pay_x", "amount": body["amount"]}, status=201)


async def create_durable(request):
    # What no conforming create can skip, and nothing else: the signature, the body's
    # validation, and the payment stored with its Idempotency-Key in one durable commit
    # (the hub's group-commit ledger). No audit entry, bank order, log line or limit.
    body = await request.read()
    signed = SignedRequest.from_aiohttp(request, body)
    try:
        credential = await authenticate(signed, credentials, nonces, datetime.now(UTC))
        wanted = parse_payment_request(json.loads(body), known_banks={"vnpay"})
    except ProblemError as problem:
        return web.json_response({"code": problem.code}, status=problem.status)
    now = system_clock()
    canonical = wanted.canonical()
    payment = Payment(
        id=new_id("pay"), portal_id=credential.principal, dossier=canonical["dossier"],
        items=canonical["items"], amount=wanted.amount, currency="VND", bank="vnpay",
        bank_reference=new_bank_reference(), payment_url=None, qr=None,
        status=PaymentStatus.PENDING, created_at=now,
        expires_at=now + timedelta(seconds=wanted.expires_in), paid_at=None,
        refunded_amount=0, failure_code=None,
    )
    payer = canonical["payer"]
    new = NewPayment(payment, payer["name"], payer.get("id_number"), payer.get("phone"),
                     wanted.return_url)
    record = IdempotencyRecord(credential.principal, request.headers["Idempotency-Key"],
                               "payments.create", wanted.fingerprint(), payment.id, now)

    async def unit(work):
        return work.idempotency_keys.claim(record, creates=new, audit=())

    claim = await ledger.run(unit)
    if not claim.won:
        return web.json_response({"code": "idempotency_conflict"}, status=409)
    return web.json_response({"id": payment.id, "amount": payment.amount}, status=201)


async def database(app):
    await migrate.upgrade(engine)
    await ledger.start()
    yield
    await ledger.close()
    await engine.dispose()


app = web.Application()
app.cleanup_ctx.append(database)
app.router.add_post("/v1/payments", create if sys.argv[4] == "auth" else create_durable)
app.router.add_get("/readyz", lambda request: web.Response(text="ok"))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), reuse_port=True, access_log=None,
            print=None)
"""

CEILING_SOURCE = """
import asyncio, sys

ANSWER = (b"HTTP/1.1 201 Created\\r\\nContent-Type: application/json\\r\\n"
          b"Content-Length: 29\\r\\n\\r\\n" b'{"id":"pay_x","amount":12345}')

class Constant(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\\r\\n\\r\\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:].split(b"\\r\\n", 1)[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            self.transport.write(ANSWER)

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Constant, "127.0.0.1", int(sys.argv[1]), reuse_port=True)
    await server.serve_forever()

asyncio.run(main())
"""

HMAC_PORTAL = "benchhmac"
WARM_UP = 200
FLOOR_SOURCE %= {"hmac": HMAC_PORTAL}


# --- requests, built and signed before the clock starts ----------------------------------


def _create_body(run: str, index: int, bank: str = "vnpay") -> dict[str, Any]:
    """A create like a portal's: one dossier, two fee lines, a Vietnamese payer."""
    amount_a, amount_b = 150_000 + index % 1000, 50_000
    return {
        "dossier": {
            "code": f"B{run}-{index:07d}",
            "procedure_code": "1.001234",
            "agency_code": "H29.17",
            "agency_name": "UBND Phường Bến Nghé",
        },
        "amount": amount_a + amount_b,
        "currency": "VND",
        "items": [
            {
                "kind": "charge",
                "code": "LPTB",
                "description": "Lệ phí trước bạ",
                "amount": amount_a,
            },
            {"kind": "fee", "code": "PCD", "description": "Phí cấp đăng ký", "amount": amount_b},
        ],
        "payer": {"name": "Nguyễn Văn An", "id_number": "001090001234", "phone": "0912345678"},
        "description": "Lệ phí hồ sơ",
        "bank": bank,
        "return_url": "https://dichvucong.example.vn/payments/return",
        "expires_in": 900,
    }


def signed_creates(
    port: int,
    keyid: str,
    key: Ed25519PrivateKey | bytes,
    run: str,
    count: int,
    bank: str = "vnpay",
) -> tuple[list[bytes], list[int]]:
    """``count`` creates, each with its own nonce, Idempotency-Key and dossier."""
    url = f"http://127.0.0.1:{port}/v1/payments"
    now = datetime.now(UTC)
    requests, amounts = [], []
    for index in range(count):
        body_json = _create_body(run, index, bank)
        body = encode_json(body_json)
        headers = sign_headers(
            "POST", url, keyid=keyid, key=key, created=now, body=body,
            content_type="application/json", idempotency_key=str(uuid.uuid4()),
        )  # fmt: skip
        requests.append(http_request("POST", "/v1/payments", port, headers, body))
        amounts.append(int(body_json["amount"]))
    return requests, amounts


def signed_ipns(
    port: int, payments: Sequence[dict[str, Any]], tmn_code: str, secret: str
) -> list[bytes]:
    """One successful VNPay IPN per payment, signed as the gateway signs them."""
    from banks.vnpay import wire

    paid = wire.format_date(datetime.now(UTC))
    requests = []
    for number, payment in enumerate(payments):
        params = {
            "vnp_Amount": wire.encode_amount(payment["amount"]),
            "vnp_BankCode": "NCB",
            "vnp_BankTranNo": f"VNP{14000000 + number}",
            "vnp_CardType": "ATM",
            "vnp_OrderInfo": "Le phi ho so",
            "vnp_PayDate": paid,
            "vnp_ResponseCode": "00",
            "vnp_TmnCode": tmn_code,
            "vnp_TransactionNo": str(14000000 + number),
            "vnp_TransactionStatus": "00",
            "vnp_TxnRef": payment["bank_reference"],
        }
        target = f"/banks/vnpay/notify?{wire.signed_query(params, secret)}"
        requests.append(http_request("GET", target, port, {}, b""))
    return requests


def signed_credit_notifications(
    port: int, payments: Sequence[dict[str, Any]], bank_key_file: Path, account: tuple[str, str]
) -> list[bytes]:
    """One camt.054 credit notification per payment, signed as the collecting bank signs."""
    from banks.vietqr import cash_report, signing

    key = signing.load_private_key(bank_key_file.read_text())
    at = datetime.now(UTC)
    requests = []
    for number, payment in enumerate(payments):
        credit = cash_report.Credit(
            transaction_id=f"FT{26000000 + number}",
            end_to_end_id=f"NAPAS{number:010d}",
            amount=payment["amount"],
            text=f"MBVCB.{number}.{payment['bank_reference']}.CT tu 0912345678",
            at=at,
        )
        document = cash_report.notification(
            f"N{number}", at, cash_report.Account(*account), [credit]
        )
        headers = {"Content-Type": "application/xml", signing.HEADER: signing.sign(key, document)}
        requests.append(http_request("POST", "/banks/vietqr/notify", port, headers, document))
    return requests


def signed_wallet_ipns(
    port: int, payments: Sequence[dict[str, Any]], momo: dict[str, str]
) -> list[bytes]:
    """One successful MoMo IPN per payment, signed as the wallet signs them."""
    from banks.momo import wire

    now = int(datetime.now(UTC).timestamp() * 1000)
    requests = []
    for number, payment in enumerate(payments):
        ipn: dict[str, Any] = {
            "partnerCode": momo["partner_code"],
            "orderId": payment["bank_reference"],
            "requestId": f"bench-{number}",
            "amount": payment["amount"],
            "orderInfo": "Le phi ho so",
            "orderType": wire.ORDER_TYPE,
            "transId": 3_200_000_000 + number,
            "resultCode": wire.SUCCESS,
            "message": "Successful.",
            "payType": "qr",
            "responseTime": now,
            "extraData": "",
        }
        signed = {**ipn, "accessKey": momo["access_key"]}
        ipn["signature"] = wire.sign(signed, wire.IPN_FIELDS, momo["secret_key"])
        headers = {"Content-Type": "application/json"}
        requests.append(http_request("POST", "/banks/momo/notify", port, headers, encode_json(ipn)))
    return requests


# --- checking every answer ---------------------------------------------------------------


def check_creates(outcome: Outcome, amounts: Sequence[int]) -> tuple[int, list[dict[str, Any]]]:
    """Wrong answers, and the created payments (id, bank reference, amount)."""
    wrong, created = 0, []
    for (status, body), amount in zip(outcome.answers, amounts, strict=True):
        try:
            payment = json.loads(body) if status == 201 else None
        except ValueError:
            payment = None
        if (
            not isinstance(payment, dict)
            or not str(payment.get("id", "")).startswith("pay_")
            or payment.get("status") != "pending"
            or payment.get("amount") != amount
            or not _names_its_reference(payment)
        ):
            wrong += 1
            continue
        created.append(
            {"id": payment["id"], "bank_reference": payment["bank_reference"], "amount": amount}
        )
    return wrong, created


def _names_its_reference(payment: dict[str, Any]) -> bool:
    """The payer is sent to the right order: VNPay's URL or the VietQR payload carries it."""
    reference = payment.get("bank_reference")
    if payment.get("bank") == "vietqr":
        from banks.vietqr.emvco import decode_vietqr

        return decode_vietqr(str(payment.get("qr"))).purpose == reference
    if payment.get("bank") == "momo":  # the wallet's payUrl names its own token
        return bool(reference) and str(payment.get("payment_url")).startswith("http")
    query = dict(parse_qsl(urlsplit(str(payment.get("payment_url"))).query))
    return query.get("vnp_TxnRef") == reference


def check_baseline(outcome: Outcome, amounts: Sequence[int]) -> int:
    wrong = 0
    for (status, body), amount in zip(outcome.answers, amounts, strict=True):
        if status != 201 or json.loads(body or b"{}").get("amount") != amount:
            wrong += 1
    return wrong


def check_confirms(outcome: Outcome) -> int:
    expected = {"RspCode": "00", "Message": "Confirm Success"}
    wrong = 0
    for status, body in outcome.answers:
        try:
            ok = status == 200 and json.loads(body) == expected
        except ValueError:
            ok = False
        wrong += not ok
    return wrong


def check_wallet_answers(outcome: Outcome) -> int:
    return sum(1 for status, _ in outcome.answers if status != 204)


def check_credit_answers(outcome: Outcome) -> int:
    expected = {"outcomes": ["applied"]}
    wrong = 0
    for status, body in outcome.answers:
        try:
            ok = status == 200 and json.loads(body) == expected
        except ValueError:
            ok = False
        wrong += not ok
    return wrong


async def check_committed(
    database_url: str, created: Sequence[str], confirmed: Sequence[str]
) -> dict[str, int]:
    """After the hub stopped: every answered create is stored, every confirmed one paid.

    A ``201`` or a ``00`` answered for something the database does not hold would be an
    answer sent before (or without) its commit.
    """
    from sqlalchemy import func, select

    from payhub.store.engine import create_engine
    from payhub.store.tables import audit_log, events, payments

    engine = create_engine(database_url)
    missing = unpaid = unevented = unaudited = 0
    try:
        async with engine.connect() as conn:
            for start in range(0, len(created), 500):
                chunk = list(created[start : start + 500])
                found = await conn.scalar(
                    select(func.count()).select_from(payments).where(payments.c.id.in_(chunk))
                )
                missing += len(chunk) - int(found or 0)
            for start in range(0, len(confirmed), 500):
                chunk = list(confirmed[start : start + 500])
                paid = await conn.scalar(
                    select(func.count())
                    .select_from(payments)
                    .where(payments.c.id.in_(chunk), payments.c.status == "succeeded")
                )
                unpaid += len(chunk) - int(paid or 0)
                with_event = await conn.scalar(
                    select(func.count(func.distinct(events.c.payment_id))).where(
                        events.c.payment_id.in_(chunk), events.c.type == "payment.succeeded"
                    )
                )
                unevented += len(chunk) - int(with_event or 0)
                with_audit = await conn.scalar(
                    select(func.count(func.distinct(audit_log.c.payment_id))).where(
                        audit_log.c.payment_id.in_(chunk), audit_log.c.to_status == "succeeded"
                    )
                )
                unaudited += len(chunk) - int(with_audit or 0)
    finally:
        await engine.dispose()
    return {
        "answered_but_not_stored": missing,
        "confirmed_but_not_succeeded": unpaid,
        "confirmed_without_event": unevented,
        "confirmed_without_audit": unaudited,
    }


async def webhook_states(database_url: str) -> dict[str, int]:
    """Events by delivery state: the hub delivered them to the portal while it measured."""
    from sqlalchemy import func, select

    from payhub.store.engine import create_engine
    from payhub.store.tables import events

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(events.c.delivery_state, func.count()).group_by(events.c.delivery_state)
            )
            return {str(state): int(count) for state, count in rows}
    finally:
        await engine.dispose()


# --- servers -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_listening(port: int, path: str, processes: Sequence[Process]) -> None:
    request = http_request("GET", path, port, {}, b"")
    for _ in range(300):
        if any(p.returncode is not None for p in processes):
            raise ConfigError("a benchmark server exited at start")
        try:
            _, protocol = await asyncio.get_running_loop().create_connection(
                HttpConnection, "127.0.0.1", port
            )
            status, _ = await asyncio.wait_for(protocol.exchange(request), 5)
            assert protocol.transport is not None
            protocol.transport.close()
            if status < 500:
                return
        except (OSError, ValueError, TimeoutError):
            pass
        await asyncio.sleep(0.1)
    raise ConfigError("a benchmark server did not start")


async def _spawn(count: int, *command: str) -> list[Process]:
    """Start servers as a user does: default log level, every line rendered and written."""
    env = {k: v for k, v in os.environ.items() if k != "PAYHUB_LOG_LEVEL"}
    quiet = asyncio.subprocess.DEVNULL
    return [
        await asyncio.create_subprocess_exec(*command, env=env, stderr=quiet, stdout=quiet)
        for _ in range(count)
    ]


async def _stop(processes: Sequence[Process]) -> None:
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            await asyncio.wait_for(process.wait(), timeout=15)
        except TimeoutError:
            process.kill()
            await process.wait()


@dataclass
class Setup:
    """The temporary installation the bench measures: config, keys, bank secrets."""

    folder: Path
    config: Path
    port: int
    callback_port: int
    """Where both portals receive their webhooks (a bare aiohttp portal answering 204)."""
    database_url: str
    demo_key: Ed25519PrivateKey
    hmac_secret: bytes
    tmn_code: str
    hash_secret: str
    workers: int
    vietqr: tuple[Path, tuple[str, str]] | None = None
    """The simulated collecting bank's signing key file and (BIN, account), when configured."""
    momo: dict[str, str] | None = None
    """The MoMo merchant's partner code, access key and secret key, when configured."""
    runs: list[str] = field(default_factory=list)

    def run_id(self) -> str:
        self.runs.append(uuid.uuid4().hex[:6].upper())
        return self.runs[-1]


async def _prepare(folder: Path, database_url: str | None, workers: int) -> Setup:
    import secrets

    from payhub.settings import load_settings
    from payhub.setup import add_principal, init_setup
    from payhub.store import migrate
    from payhub.store.engine import create_engine

    port = _free_port()
    callback_port = _free_port()
    callback = f"http://127.0.0.1:{callback_port}/payhub/events"
    config = init_setup(folder, port=port)
    text = re.sub(r'callback_url = "[^"]*"', f'callback_url = "{callback}"', config.read_text())
    if database_url:
        text = text.replace('"sqlite:///payhub.db"', json.dumps(database_url))
    config.write_text(text)
    secret_file = folder / "keys" / f"{HMAC_PORTAL}.secret"
    hmac_secret = secrets.token_bytes(32)
    secret_file.write_bytes(hmac_secret)
    add_principal(
        config, "portals", HMAC_PORTAL, hmac_secret_file=str(secret_file),
        callback=callback,
    )  # fmt: skip
    settings = load_settings(config)
    engine = create_engine(settings.database_url)
    try:
        if database_url:
            from sqlalchemy import text as sql

            from payhub.store.tables import metadata

            async with engine.begin() as conn:  # a clean slate on a shared server
                await conn.run_sync(metadata.drop_all)
                await conn.execute(sql("DROP TABLE IF EXISTS alembic_version"))
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    key = serialization.load_pem_private_key((folder / "keys" / "demo.pem").read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    vnpay = settings.banks["vnpay"].options
    return Setup(
        folder=folder,
        config=config,
        port=port,
        callback_port=callback_port,
        database_url=settings.database_url,
        demo_key=key,
        hmac_secret=hmac_secret,
        tmn_code=str(vnpay["tmn_code"]),
        hash_secret=str(vnpay["hash_secret"]),
        workers=workers,
        vietqr=_vietqr_bank(settings),
        momo=_momo_merchant(settings),
    )


def _momo_merchant(settings: Any) -> dict[str, str] | None:
    bank = settings.banks.get("momo")
    if bank is None:
        return None
    return {name: str(bank.options[name]) for name in ("partner_code", "access_key", "secret_key")}


def _vietqr_bank(settings: Any) -> tuple[Path, tuple[str, str]] | None:
    bank = settings.banks.get("vietqr")
    if bank is None or "simulator_signing_key_file" not in bank.options:
        return None
    options = bank.options
    return Path(options["simulator_signing_key_file"]), (options["bin"], options["account"])


async def _start_hub(setup: Setup) -> list[Process]:
    command = [sys.executable, "-m", "payhub.cli", "serve", "--config", str(setup.config)]
    if setup.workers > 1:
        command += ["--workers", str(setup.workers)]
    else:  # as `init` sets it up: MoMo orders go to its simulator on the same server
        command += ["--simulators"]
    processes = await _spawn(1, *command)
    try:
        await _wait_listening(setup.port, "/readyz", processes)
    except BaseException:
        await _stop(processes)
        raise
    return processes


def _server_pids(processes: Sequence[Process]) -> list[int]:
    """The processes to charge CPU to: each one and its children (``--workers``)."""
    pids = [p.pid for p in processes]
    for pid in list(pids):
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        pids += [int(child) for child in children]
    return pids


async def _run_external(
    folder: Path,
    name: str,
    source: str,
    count: int,
    ready: str,
    port: int | None = None,
    *arguments: str,
) -> Any:
    script = folder / f"{name}.py"
    script.write_text(source)
    port = port or _free_port()
    processes = await _spawn(count, sys.executable, str(script), str(port), *arguments)
    try:
        await _wait_listening(port, ready, processes)
    except BaseException:
        await _stop(processes)
        raise
    return port, processes


# --- the scenarios -----------------------------------------------------------------------


@dataclass
class Measured:
    """Summaries by scenario, wrong answers by scenario, and the database check."""

    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)
    wrong: dict[str, int] = field(default_factory=dict)
    committed: dict[str, int] = field(default_factory=dict)
    webhooks: dict[str, int] = field(default_factory=dict)
    """Events by delivery state once the hub stopped (the live portal answered 204)."""

    def ratios(self) -> dict[str, float]:
        base = self.scenarios["baseline"]["per_second"]
        return {
            name: round(row["per_second"] / base, 3)
            for name, row in self.scenarios.items()
            if name not in ("baseline", "ceiling") and base
        }


async def _measure_round(
    setup: Setup, requests: int, concurrency: int, say: Callable[[str], None]
) -> Measured:
    measured = Measured()
    folder = setup.folder

    port, processes = await _run_external(folder, "ceiling", CEILING_SOURCE, 1, "/")
    try:
        run = setup.run_id()
        prepared, _ = signed_creates(port, "demo", setup.demo_key, run, requests)
        outcome = await send_all(port, prepared, concurrency, _server_pids(processes))
    finally:
        await _stop(processes)
    measured.scenarios["ceiling"] = outcome.summary()
    measured.wrong["ceiling"] = sum(1 for status, _ in outcome.answers if status != 201)
    say(f"  ceiling        {outcome.summary()['per_second']:>9}/s  (generator against a constant)")

    port, processes = await _run_external(
        folder, "baseline", BASELINE_SOURCE, setup.workers, "/readyz"
    )
    try:
        prepared, amounts = signed_creates(port, "demo", setup.demo_key, setup.run_id(), requests)
        await send_all(port, prepared[:WARM_UP], concurrency, [])
        outcome = await send_all(port, prepared, concurrency, _server_pids(processes))
    finally:
        await _stop(processes)
    measured.scenarios["baseline"] = outcome.summary()
    measured.wrong["baseline"] = check_baseline(outcome, amounts)
    say(f"  baseline       {outcome.summary()['per_second']:>9}/s")

    for mode, floors in (
        (
            "auth",
            (
                ("floor-ed25519", "demo", setup.demo_key),
                ("floor-hmac", HMAC_PORTAL, setup.hmac_secret),
            ),
        ),
        ("durable", (("floor-durable", HMAC_PORTAL, setup.hmac_secret),)),
    ):
        database = folder / f"floor-{mode}-{setup.run_id()}.db"
        port, processes = await _run_external(
            folder, "floor", FLOOR_SOURCE, setup.workers, "/readyz", None, str(folder / "keys"),
            str(database), mode,
        )  # fmt: skip
        try:
            for scenario, keyid, key in floors:
                warm, _ = signed_creates(port, keyid, key, setup.run_id(), WARM_UP)
                await send_all(port, warm, concurrency, [])
                prepared, amounts = signed_creates(port, keyid, key, setup.run_id(), requests)
                outcome = await send_all(port, prepared, concurrency, _server_pids(processes))
                measured.scenarios[scenario] = outcome.summary()
                measured.wrong[scenario] = check_baseline(outcome, amounts)
                say(f"  {scenario:<14} {outcome.summary()['per_second']:>9}/s")
        finally:
            await _stop(processes)

    # The portals' webhook receiver: a live portal answering 204, as in production. With
    # none, every event's delivery is refused and retried on its schedule, and those
    # retries would load whichever scenario runs when they come due.
    _, portal = await _run_external(
        folder, "portal", PORTAL_SOURCE, 1, "/payhub/events", port=setup.callback_port
    )
    try:
        processes = await _start_hub(setup)
    except BaseException:
        await _stop(portal)
        raise
    created_ids: list[str] = []
    confirmed_ids: list[str] = []
    try:
        pids = _server_pids(processes)
        to_confirm: list[dict[str, Any]] = []
        for scenario, keyid, key in (
            ("create-ed25519", "demo", setup.demo_key),
            ("create-hmac", HMAC_PORTAL, setup.hmac_secret),
        ):
            warm, _ = signed_creates(setup.port, keyid, key, setup.run_id(), WARM_UP)
            await send_all(setup.port, warm, concurrency, [])
            prepared, amounts = signed_creates(setup.port, keyid, key, setup.run_id(), requests)
            outcome = await send_all(setup.port, prepared, concurrency, pids)
            measured.wrong[scenario], created = check_creates(outcome, amounts)
            measured.scenarios[scenario] = outcome.summary()
            created_ids += [p["id"] for p in created]
            to_confirm += created
            say(f"  {scenario:<14} {outcome.summary()['per_second']:>9}/s")
        ipns = signed_ipns(setup.port, to_confirm, setup.tmn_code, setup.hash_secret)
        warm_count = min(WARM_UP, len(ipns) // 10)
        await send_all(setup.port, ipns[:warm_count], concurrency, [])
        ipns = ipns[warm_count : warm_count + requests]
        outcome = await send_all(setup.port, ipns, concurrency, pids)
        measured.scenarios["confirm"] = outcome.summary()
        measured.wrong["confirm"] = check_confirms(outcome)
        confirmed_ids = [p["id"] for p in to_confirm[warm_count : warm_count + requests]]
        say(f"  confirm        {outcome.summary()['per_second']:>9}/s")
        if setup.momo is not None and setup.workers == 1:  # orders placed at its simulator
            made, amounts = signed_creates(
                setup.port, "demo", setup.demo_key, setup.run_id(), requests, "momo"
            )
            answered = await send_all(setup.port, made, concurrency, [])
            wrong, wallet = check_creates(answered, amounts)
            measured.wrong["confirm-momo"] = wrong
            created_ids += [p["id"] for p in wallet]
            ipns = signed_wallet_ipns(setup.port, wallet, setup.momo)
            outcome = await send_all(setup.port, ipns, concurrency, pids)
            measured.scenarios["confirm-momo"] = outcome.summary()
            measured.wrong["confirm-momo"] += check_wallet_answers(outcome)
            confirmed_ids += [p["id"] for p in wallet]
            say(f"  confirm-momo   {outcome.summary()['per_second']:>9}/s")
        if setup.vietqr is not None:  # a transfer bank: orders are QR payloads, made locally
            made, amounts = signed_creates(
                setup.port, "demo", setup.demo_key, setup.run_id(), requests, "vietqr"
            )
            wrong, transfers = check_creates(
                await send_all(setup.port, made, concurrency, []), amounts
            )
            measured.wrong["confirm-vietqr"] = wrong
            created_ids += [p["id"] for p in transfers]
            pushes = signed_credit_notifications(setup.port, transfers, *setup.vietqr)
            outcome = await send_all(setup.port, pushes, concurrency, pids)
            measured.scenarios["confirm-vietqr"] = outcome.summary()
            measured.wrong["confirm-vietqr"] += check_credit_answers(outcome)
            confirmed_ids += [p["id"] for p in transfers]
            say(f"  confirm-vietqr {outcome.summary()['per_second']:>9}/s")
    finally:
        await _stop(processes)
        await _stop(portal)
    measured.committed = await check_committed(setup.database_url, created_ids, confirmed_ids)
    measured.webhooks = await webhook_states(setup.database_url)
    return measured


async def run_bench(
    *,
    requests: int,
    concurrency: int,
    workers: int,
    database_url: str | None,
    as_json: bool,
    preload: int = 0,
    deliver: bool = False,
) -> int:
    """Measure every scenario (twice with ``preload``); exit status 1 on any wrong answer."""
    log = sys.stderr if sys.stderr.isatty() else None

    def say(line: str) -> None:
        if log:
            print(line, file=log, flush=True)

    if preload and database_url:
        raise ConfigError("--preload is implemented for the embedded SQLite database only")
    task = asyncio.current_task()
    if task is not None:  # SIGTERM stops the servers too, as Ctrl-C does
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="payhub-bench-") as name:
        setup = await _prepare(Path(name), database_url, workers)
        say(f"bench: {requests} requests a scenario, {concurrency} in flight, {workers} worker(s)")
        rounds = {"empty": await _measure_round(setup, requests, concurrency, say)}
        if preload:
            from payhub.bench_preload import preload_payments

            say(f"  preloading {preload:,} payments …")
            started = time.perf_counter()
            stored = preload_payments(_sqlite_path(setup.database_url), preload)
            say(f"  preloaded in {time.perf_counter() - started:.0f} s: {stored}")
            rounds["preloaded"] = await _measure_round(setup, requests, concurrency, say)
    result = _result(rounds, requests, concurrency, workers, database_url, preload)
    if deliver:
        from payhub.notify.measure import measure_delivery

        say("  deliver: outbox to a bare aiohttp portal, then confirmation → webhook …")
        result["deliver"] = await measure_delivery(
            events_count=requests, payments=min(requests, 1000), concurrency=min(concurrency, 32)
        )
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    return 0 if result["wrong_answers"] == 0 else 1


def _sqlite_path(database_url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(database_url).database or ""


def _result(
    rounds: dict[str, Measured],
    requests: int,
    concurrency: int,
    workers: int,
    database_url: str | None,
    preload: int,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "database": "postgresql" if database_url else "sqlite",
        "workers": workers,
        "concurrency": concurrency,
        "requests_per_scenario": requests,
        "log_level": "info (default)",
        "preload": preload,
        "wrong_answers": 0,
    }
    for label, measured in rounds.items():
        wrong = sum(measured.wrong.values()) + sum(measured.committed.values())
        result["wrong_answers"] += wrong
        result[label] = {
            "scenarios": measured.scenarios,
            "ratio_to_baseline": measured.ratios(),
            "wrong_answers": measured.wrong,
            "database_check": measured.committed,
            "webhooks": measured.webhooks,
        }
    if "preloaded" in rounds:
        empty, loaded = rounds["empty"].ratios(), rounds["preloaded"].ratios()
        result["preloaded_vs_empty"] = {
            name: round(loaded[name] / empty[name], 3) for name in empty if empty[name]
        }
    return result


def _print_table(result: dict[str, Any]) -> None:
    print(
        f"PayHub bench: {result['requests_per_scenario']} requests a scenario, "
        f"{result['concurrency']} in flight, {result['workers']} hub worker(s), "
        f"{result['database']}, log level {result['log_level']}, "
        f"{result['machine']['cpus']} CPUs"
    )
    for label in ("empty", "preloaded"):
        if label not in result:
            continue
        block = result[label]
        if "preloaded" in result:
            extra = f" ({result['preload']:,} payments stored)" if label == "preloaded" else ""
            print(f" {label} database{extra}:")
        print(
            f"  {'scenario':<15}{'per s':>9}{'ratio':>8}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'hub µs/req':>12}{'gen µs/req':>12}{'wrong':>7}"
        )
        for name, row in block["scenarios"].items():
            ratio = block["ratio_to_baseline"].get(name)
            cpu = row["server_cpu_us_per_request"]
            print(
                f"  {name:<15}{row['per_second']:>9}"
                f"{'' if ratio is None else f'{ratio:.2f}':>8}"
                f"{row['latency_ms']['p50']:>9}{row['latency_ms']['p99']:>9}"
                f"{'' if cpu is None else cpu:>12}{row['generator_cpu_us_per_request']:>12}"
                f"{block['wrong_answers'].get(name, 0):>7}"
            )
        bad = {k: v for k, v in block["database_check"].items() if v}
        print(f"  database check: {'every answer committed' if not bad else bad}")
        states = ", ".join(f"{n:,} {state}" for state, n in sorted(block["webhooks"].items()))
        print(f"  webhooks to the live portal: {states or 'none'}")
    if "preloaded_vs_empty" in result:
        moves = ", ".join(f"{k} {v:.2f}" for k, v in result["preloaded_vs_empty"].items())
        print(f" preloaded ratio / empty ratio: {moves}")
    if "deliver" in result:
        throughput = result["deliver"]["throughput"]
        latency = result["deliver"]["confirmation_to_webhook"]
        print(f" deliver: {throughput}")
        print(f" confirmation → webhook: {latency}")
    if result["wrong_answers"]:
        print(f" FAILED: {result['wrong_answers']} wrong answers")
