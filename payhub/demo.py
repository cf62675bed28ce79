"""``payhub demo``: the whole world on one machine, and what happened in it.

A fresh setup (as ``payhub init`` writes it) in a temporary folder, the hub on a
temporary SQLite database with the simulator of every bank that setup configured
mounted, and a simulated portal that files dossiers and sends their payers to the banks
in turn, with faults switched on: some pay, some lack funds or give up, some
confirmations arrive several times at once, are tampered with, signed with the wrong key
or lost, a bank times out on an order, some portals retry their request, a payer pays
after the deadline. Each bank plays the scenarios it can (``Scenario.needs``).

Then the recovery worker settles what the confirmations did not: the demo's clock (the
hub's, the portal's and the simulators') jumps past the first recovery query and then
past the payments' expiry, and after each jump the worker's rounds run at once, so the
default schedule and the contract's 300 s minimum expiry play in a few seconds. Every
payment must end in its scenario's final state: none is left ``pending`` or ``unknown``.
It also checks every paid dossier paid once, one event per state change, an unbroken
audit chain. The portal receives its webhooks through the SDK's receiver, and fails
every fifth one the first time, so the summary shows retries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from yarl import URL

from banks.simulation.control import BANK
from payhub import keys
from payhub.app import create_app, notify_url, simulator_factory
from payhub.connectors.registry import connector_class
from payhub.domain.clock import system_clock, to_vietnam
from payhub.domain.payment import Refund
from payhub.portal.client import PortalClient
from payhub.portal.receiver import WebhookReceiver
from payhub.portal.webhooks import Webhook
from payhub.reconcile.engine import Reconciler, RunRequest
from payhub.reconcile.formats import bank_account, usual_format
from payhub.recovery.lifecycle import RECOVERY
from payhub.recovery.schedule import RecoveryPolicy
from payhub.service.recovery import Settled
from payhub.service.refunds import REFUND_FIRST_QUERY, RefundService
from payhub.service.unit_of_work import Reading
from payhub.settings import BankSettings, Settings, load_settings
from payhub.setup import init_setup
from payhub.store.audit import verify_chain
from payhub.store.outbox import LedgerOutbox
from payhub.store.tables import events

AGENCIES = [
    ("H29.17", "UBND quận Ba Đình"),
    ("G01.05", "Sở Tư pháp tỉnh Bắc Ninh"),
    ("000.00.12.H31", "Cục Thuế TP Hải Phòng"),
]
PAYERS = ["Nguyễn Văn An", "Trần Thị Bích", "Lê Hoàng Cường", "Phạm Thu Dung", "Đặng Quốc Huy"]

QUERY = "query"
"""A scenario that needs the bank's status query to tell a paid order (recovery)."""
FAULTS = "faults"
"""A scenario that needs the simulator toolkit's fault knobs and ``abandon`` payer."""
REPORTS_FAILURE = "reports_failure"
"""A scenario whose payer fails at the bank and the bank says so: a transfer bank
(VietQR) sends nothing when no money moves, so its payment expires instead."""
REMOTE = "remote"
"""A scenario that needs a bank whose orders are placed over the network (a timeout)."""
QUERYING_PROTOCOLS = frozenset({"vnpay", "momo"})
"""Protocols whose status query answers for a paid order: a transfer bank (VietQR) has
none, its lost confirmations are settled by the next day's statement instead."""
ORDER_TIMEOUT_SECONDS = 1
"""The demo's order timeout at remote banks (``timeout_seconds``): the timeout scenario
waits this long, not the connector's default."""
RECOVERY_POLICY = RecoveryPolicy(enabled=False)
"""The default schedule; the demo runs the worker's rounds itself after each clock jump."""
EXPIRES_IN = 900
CLOCK_STEP = 240.0
"""The demo clock's largest jump: under the 300 s a webhook receiver tolerates."""


@dataclass(frozen=True)
class Scenario:
    """One way a payer (and the network) can behave, and the status the hub must end in."""

    name: str
    outcome: str | None
    expected: str
    faults: dict[str, Any] = field(default_factory=dict)
    portal_retries: bool = False
    portal_cancels: bool = False
    needs: frozenset[str] = frozenset()
    """Outcomes beyond ``success``/``abandon`` and capabilities (``QUERY``, ``REMOTE``)."""
    pays_after_expiry: bool = False
    order_times_out: bool = False


LOST = {"lose_confirmation": 1}
SCENARIOS = [
    Scenario("pays at once", "success", "succeeded"),
    Scenario(
        "pays; bank sends the IPN 3× at once",
        "success",
        "succeeded",
        faults={"duplicate_confirmation": 2, "concurrent_duplicates": True},
        needs=frozenset({FAULTS}),
    ),
    Scenario(
        "pays; confirmation lost (recovered by query)",
        "success",
        "succeeded",
        faults=LOST,
        needs=frozenset({QUERY, FAULTS}),
    ),
    Scenario(
        "pays; IPN signed with a wrong key (rejected, then queried)",
        "success",
        "succeeded",
        faults={"bad_signature": 1, "ipn_retries": 0},
        needs=frozenset({QUERY, FAULTS}),
    ),
    Scenario("abandons the pay page (expires)", "abandon", "expired", needs=frozenset({FAULTS})),
    Scenario(
        "bank times out on the order (unknown, expires)",
        None,
        "expired",
        needs=frozenset({REMOTE, FAULTS}),
        order_times_out=True,
    ),
    Scenario(
        "insufficient funds",
        "insufficient_funds",
        "failed",
        needs=frozenset({"insufficient_funds", REPORTS_FAILURE}),
    ),
    Scenario("pays; portal retried its request", "success", "succeeded", portal_retries=True),
    Scenario("pays twice at the bank", "pay_twice", "succeeded", needs=frozenset({"pay_twice"})),
    Scenario(
        "cancels at the bank", "cancel", "failed", needs=frozenset({"cancel", REPORTS_FAILURE})
    ),
    Scenario(
        "pays; IPN tampered in transit (rejected, then queried)",
        "success",
        "succeeded",
        faults={"tamper_amount": 1, "ipn_retries": 0},
        needs=frozenset({QUERY, FAULTS}),
    ),
    Scenario("portal cancels before paying", None, "cancelled", portal_cancels=True),
    Scenario(
        "pays after the deadline; confirmation lost (late)",
        "success",
        "succeeded",
        faults=LOST,
        needs=frozenset({QUERY, FAULTS}),
        pays_after_expiry=True,
    ),
]


@dataclass
class DossierRun:
    scenario: Scenario
    dossier: str
    bank: str
    payment_id: str = ""
    payment: dict[str, Any] = field(default_factory=dict)
    created_status: str = ""
    status: str = ""
    replayed: bool = False


class DemoClock:
    """Real time plus an offset the demo moves forward (a hub clock, like ``FakeClock``)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return system_clock() + self.offset

    def timestamp(self) -> float:
        return self().timestamp()

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(index: int, dossier: str, bank: str) -> dict[str, Any]:
    agency_code, agency_name = AGENCIES[index % len(AGENCIES)]
    fee = 50_000 + 10_000 * (index % 7)
    charge = 100_000 * (1 + index % 5)
    return {
        "dossier": {
            "code": dossier,
            "procedure_code": "1.004227",
            "agency_code": agency_code,
            "agency_name": agency_name,
        },
        "payer": {"name": PAYERS[index % len(PAYERS)], "id_number": "001090001234"},
        "items": [
            {"kind": "charge", "code": "LPTB", "description": "Lệ phí trước bạ", "amount": charge},
            {"kind": "fee", "code": "PCD", "description": "Phí cấp đăng ký", "amount": fee},
        ],
        "amount": charge + fee,
        "currency": "VND",
        "bank": bank,
        "return_url": f"http://localhost/dossiers/{dossier}/paid",
        "expires_in": EXPIRES_IN,
    }


def _with_order_timeout(settings: Settings) -> tuple[Settings, set[str]]:
    """Banks whose connector takes ``timeout_seconds`` get the demo's short one; the remote
    ones among them (orders placed over the network) can play an order timing out."""
    banks: dict[str, BankSettings] = dict(settings.banks)
    timing_out: set[str] = set()
    for name, bank in settings.banks.items():
        cls = connector_class(bank.connector)
        options = {**bank.options, "timeout_seconds": ORDER_TIMEOUT_SECONDS}
        if cls.check_options(options) == cls.check_options(bank.options):
            banks[name] = dataclasses.replace(bank, options=options)
            if not cls.places_orders_locally:
                timing_out.add(name)
    return dataclasses.replace(settings, banks=banks), timing_out


def _capabilities(sub: web.Application, protocol: str, timing_out: bool) -> frozenset[str]:
    simulated = sub.get(BANK)
    found = {*simulated.outcomes, FAULTS} if simulated is not None else set()
    if protocol in QUERYING_PROTOCOLS:
        found |= {QUERY, REPORTS_FAILURE}
    if timing_out and simulated is not None:
        found.add(REMOTE)
    return frozenset(found)


def plan(
    capabilities: Mapping[str, frozenset[str]], count: int
) -> tuple[list[tuple[str, Scenario]], dict[str, list[str]]]:
    """Dossier ``i`` goes to the banks in turn; each bank plays its scenarios in order.

    Also the scenarios each bank skips because it cannot play them.
    """
    names = list(capabilities)
    playable = {bank: [s for s in SCENARIOS if s.needs <= capabilities[bank]] for bank in names}
    skipped = {
        bank: [s.name for s in SCENARIOS if not s.needs <= capabilities[bank]] for bank in names
    }
    chosen = []
    for i in range(count):
        bank = names[i % len(names)]
        mine = playable[bank]
        chosen.append((bank, mine[(i // len(names)) % len(mine)]))
    return chosen, skipped


async def run_demo(*, payments: int = 36, as_json: bool = False) -> int:
    """Run the demo; prints the summary and returns 0 when every check holds."""
    if payments < 1:
        print("payhub: --payments must be at least 1", file=sys.stderr)
        return 2
    started = time.perf_counter()
    clock = DemoClock()
    with tempfile.TemporaryDirectory(prefix="payhub-demo-") as folder:
        port = _free_port()
        config = init_setup(Path(folder), port=port)
        settings = load_settings(config)
        portal = DemoPortal(f"{settings.public_url}/.well-known/jwks.json", clock)
        portal_runner, callback = await portal.start(settings.portals["demo"].callback_url)
        demo = dataclasses.replace(settings.portals["demo"], callback_url=callback)
        settings = dataclasses.replace(
            settings, portals={**settings.portals, "demo": demo}, recovery=RECOVERY_POLICY
        )
        settings, timing_out = _with_order_timeout(settings)
        app = create_app(settings, clock=clock, migrate_on_start=True)
        capabilities: dict[str, frozenset[str]] = {}
        simulators: dict[str, Any] = {}
        for name, bank in settings.banks.items():
            factory = simulator_factory(bank.connector)
            sub = factory(bank.options, notify_url=notify_url(settings, name), clock=clock)
            app.add_subapp(f"/sim/{name}/", sub)
            capabilities[name] = _capabilities(sub, bank.connector, name in timing_out)
            if sub.get(BANK) is not None:
                simulators[name] = sub[BANK]
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            summary = await _play(
                app, settings.public_url, Path(folder), capabilities, payments, clock, simulators
            )
            summary["webhooks"], delivered_once = await portal.settle(app)
            summary["checks"][WEBHOOK_CHECK] = delivered_once
            summary["checks_passed"] = summary["checks_passed"] and delivered_once
        finally:
            await runner.cleanup()
            await portal_runner.cleanup()
    summary["seconds"] = round(time.perf_counter() - started, 2)
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        _print_summary(summary)
    return 0 if summary["checks_passed"] else 1


async def _play(
    app: web.Application,
    base: str,
    folder: Path,
    capabilities: Mapping[str, frozenset[str]],
    count: int,
    clock: DemoClock,
    simulators: Mapping[str, Any],
) -> dict[str, Any]:
    key = serialization.load_pem_private_key((folder / "keys" / "demo.pem").read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    chosen, skipped = plan(capabilities, count)
    runs = [
        DossierRun(scenario, f"DEMO-{i + 1:04d}", bank) for i, (bank, scenario) in enumerate(chosen)
    ]
    progress = sys.stderr.isatty()
    worker = app[RECOVERY]
    business_day = to_vietnam(clock()).date()
    async with aiohttp.ClientSession() as session:
        portal = PortalClient(session, base, keyid="demo", key=key, clock=clock)

        async def faults(bank: str, knobs: dict[str, Any]) -> None:
            async with session.put(f"{base}/sim/{bank}/_sim/faults", json=knobs) as answer:
                if answer.status != 200:
                    raise RuntimeError(f"{bank} simulator refused faults: {await answer.text()}")

        async def pay(run: DossierRun, outcome: str) -> None:
            payment = run.payment
            payer = {
                "reference": payment["payment_url"] or payment["qr"] or payment["bank_reference"],
                "outcome": outcome,
                "faults": run.scenario.faults,
            }
            async with session.post(f"{base}/sim/{run.bank}/_sim/pay", json=payer) as answer:
                await answer.read()

        async def play(index: int, run: DossierRun) -> None:
            body = _request(index, run.dossier, run.bank)
            idempotency_key = str(uuid.uuid4())
            created = await portal.create_payment(body, idempotency_key)
            if created.status != 201:
                raise RuntimeError(f"create failed: {created.status} {created.body[:200]!r}")
            run.payment = created.json()
            run.payment_id = run.payment["id"]
            run.created_status = run.payment["status"]
            if run.scenario.portal_retries:
                again = await portal.create_payment(body, idempotency_key)
                run.replayed = (
                    again.status == 200 and again.headers.get("Idempotency-Replayed") == "true"
                )
            if run.scenario.portal_cancels:
                await portal.cancel_payment(run.payment_id)
            outcome = run.scenario.outcome
            if outcome is not None and not run.scenario.pays_after_expiry:
                await pay(run, outcome)
            if progress:
                print(f"\r  {index + 1}/{len(runs)} dossiers", end="", file=sys.stderr)

        # Orders that time out go first, alone: the fault holds every request to that bank.
        for index, run in enumerate(runs):
            if run.scenario.order_times_out:
                await faults(run.bank, {"timeout_rate": 1, "hang_seconds": 5})
                try:
                    await play(index, run)
                finally:
                    await faults(run.bank, {})
        await asyncio.gather(
            *(play(i, run) for i, run in enumerate(runs) if not run.scenario.order_times_out)
        )
        if progress:
            print(file=sys.stderr)

        # Recovery: past the first query of late payments, then past every expiry, then a
        # late payer's bank is asked again within the late window.
        policy = worker.recovery.policy

        async def jump(seconds: float) -> None:
            """Move the clock in steps shorter than a webhook's signature tolerance, so a
            webhook signed just before a step is still fresh when the portal checks it;
            the worker runs its due rounds after each step."""
            while seconds > 0:
                step = min(seconds, CLOCK_STEP)
                clock.advance(step)
                seconds -= step
                await worker.recover_all_due()
                await asyncio.sleep(0.05)  # deliveries in flight finish within the step

        await jump(policy.pending_after + 5)
        await jump(EXPIRES_IN)
        late = [r for r in runs if r.scenario.pays_after_expiry and r.scenario.outcome]
        await asyncio.gather(*(pay(run, run.scenario.outcome or "success") for run in late))
        await jump(policy.query_delays[-1])
        refunds = await _refund_scenes(app, portal, faults, runs, jump, simulators)

        for run in runs:
            run.status = (await portal.get_payment(run.payment_id)).json()["status"]
        deliveries = []
        for bank in capabilities:
            async with session.get(f"{base}/sim/{bank}/_sim/confirmations") as answer:
                deliveries.extend(await answer.json())
        pulled = []
        after = None
        while True:
            page = (await portal.list_events(after=after, limit=500)).json()
            pulled.extend(page["data"])
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        reconciliations = await _reconcile_the_day(app, session, base, capabilities, business_day)

    engine = app[keys.ENGINE]
    chain = await verify_chain(engine)
    async with engine.connect() as conn:
        stored_events = int(
            (await conn.execute(select(func.count()).select_from(events))).scalar_one()
        )
    by_scenario: dict[str, Counter[str]] = {}
    expected_ok = True
    for run in runs:
        by_scenario.setdefault(f"{run.bank}: {run.scenario.name}", Counter())[run.status] += 1
        expected_ok &= run.status == run.scenario.expected
    statuses = Counter(run.status for run in runs)
    settled = not (statuses["pending"] or statuses["unknown"])
    ipns = _tally_ipns(deliveries)
    event_types = Counter(e["type"] for e in pulled)
    once = event_types["payment.succeeded"] == statuses["succeeded"]
    replays_ok = all(run.replayed for run in runs if run.scenario.portal_retries)
    refunds_ok = all(
        r["status"] == "succeeded" and r["made_at_bank"] == 1 for r in refunds
    ) and event_types["refund.succeeded"] == len(refunds)
    counts = worker.counts
    recovery = {
        "unknown_at_create": sum(1 for run in runs if run.created_status == "unknown"),
        "bank_queries": worker.queries,
        "recovered_by_query": counts[Settled.SUCCEEDED] + counts[Settled.FAILED],
        "late_successes": counts[Settled.LATE_SUCCESS],
        "expired": counts[Settled.EXPIRED],
    }
    return {
        "dossiers": len(runs),
        "banks": list(capabilities),
        "statuses": dict(statuses),
        "scenarios": {
            name: {
                "payments": sum(c.values()),
                "statuses": dict(c),
                "expected": next(s.expected for s in SCENARIOS if name.split(": ", 1)[1] == s.name),
            }
            for name, c in by_scenario.items()
        },
        "skipped_scenarios": {bank: names for bank, names in skipped.items() if names},
        "ipns": ipns,
        "recovery": recovery,
        "reconciliation": reconciliations,
        "refunds": refunds,
        "events": {"stored": stored_events, "pulled": len(pulled), "by_type": dict(event_types)},
        "audit_chain": {"ok": chain.ok, "entries": chain.entries},
        "checks": {
            "every dossier ended as its scenario expects": expected_ok,
            "no payment is left pending or unknown": settled,
            "each succeeded payment has exactly one payment.succeeded event": once,
            "retried requests were replayed, not duplicated": replays_ok,
            "each refund whose answer was lost was made once and settled": refunds_ok,
            "audit hash chain verifies": chain.ok,
        },
        "checks_passed": expected_ok
        and settled
        and once
        and replays_ok
        and refunds_ok
        and chain.ok,
    }


REFUND_SCENES = (
    ("momo", "answer lost; asked again by recovery, made once"),
    ("vnpay", "answer lost; the bank cannot be asked, finance settles it from its records"),
)
REFUND_AMOUNT = 10_000


async def _refund_scenes(
    app: web.Application,
    portal: PortalClient,
    faults: Callable[[str, dict[str, Any]], Awaitable[None]],
    runs: list[DossierRun],
    jump: Callable[[float], Awaitable[None]],
    simulators: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """A refund of a paid dossier at each bank that refunds, its answer lost on the way.

    MoMo is asked again by recovery (the refund's orderId makes that safe). VNPay cannot be
    asked without risking a second refund: finance staff look at the bank's own records (the
    simulator's, here) and settle it with ``payhub refunds settle``'s use case.
    """

    async def ask(bank: str, story: str) -> dict[str, Any] | None:
        paid = next((r for r in runs if r.bank == bank and r.scenario.name == "pays at once"), None)
        if paid is None or bank not in simulators:
            return None
        await faults(bank, {"answer_lost_rate": 1, "hang_seconds": ORDER_TIMEOUT_SECONDS + 0.5})
        try:
            body = {"amount": REFUND_AMOUNT, "reason": "Nộp thừa lệ phí"}
            answered = await portal.create_refund(paid.payment_id, body, str(uuid.uuid4()))
        finally:
            await faults(bank, {})
        refund = answered.json()
        return {
            "bank": bank,
            "story": story,
            "id": refund["id"],
            "at_first": refund["status"],
            "payment": paid.payment,
        }

    asked = await asyncio.gather(*(ask(bank, story) for bank, story in REFUND_SCENES))
    scenes = [scene for scene in asked if scene is not None]
    if not scenes:
        return []
    await jump(REFUND_FIRST_QUERY.total_seconds() + 5)
    refunds = app[keys.REFUNDS]
    for waiting in await refunds.pending():
        if waiting.asked_again_at is not None:
            continue
        scene = next(s for s in scenes if s["id"] == waiting.refund.id)
        made = _refunds_at_bank(simulators[scene["bank"]], scene["payment"]["bank_reference"])
        await refunds.settle_by_hand(
            waiting.refund.id,
            succeeded=bool(made),
            bank_refund_id=None,
            note=f"{scene['bank']}'s records show {len(made)} refund(s) of this payment",
            actor="finance:finance",
        )
        scene["settled_by"] = "finance"
    await jump(5)  # the refund events reach the portal
    results = []
    for scene in scenes:
        stored = await _stored_refund(refunds, scene["id"])
        made = _refunds_at_bank(simulators[scene["bank"]], scene["payment"]["bank_reference"])
        results.append({
            "bank": scene["bank"], "story": scene["story"], "at_first": scene["at_first"],
            "status": stored.status if stored else "missing", "made_at_bank": len(made),
            "settled_by": scene.get("settled_by", "recovery"),
        })  # fmt: skip
    return results


async def _stored_refund(refunds: RefundService, refund_id: str) -> Refund | None:
    async def read(store: Reading) -> Refund | None:
        return await store.refunds.get(refund_id)

    return await refunds.ledger.read(read)


def _refunds_at_bank(simulated: Any, reference: str) -> list[Any]:
    """The refunds the simulated bank made of one order: its own records."""
    order = getattr(simulated, "orders", {}).get(reference)
    return list(getattr(order, "refunds", ())) if order is not None else []


async def _reconcile_the_day(
    app: web.Application,
    session: aiohttp.ClientSession,
    base: str,
    capabilities: Mapping[str, frozenset[str]],
    day: date,
) -> dict[str, Any]:
    """Finance's end of the day: each bank's statement of the demo's business day, reconciled.

    Recovery already settled what confirmations did not, so most lines match; what is left
    (a short transfer, money for a failed payment) are the exceptions a person resolves.
    """
    reconciler = Reconciler(app[keys.ENGINE], app[keys.LEDGER], app[keys.CLOCK])
    settings: Settings = app[keys.SETTINGS].current
    runs: dict[str, Any] = {}
    for bank in capabilities:
        url = f"{base}/sim/{bank}/_sim/statement"
        async with session.get(url, params={"date": day.isoformat()}) as answer:
            statement = await answer.read()
        protocol = settings.banks[bank].connector
        run = await reconciler.run(
            RunRequest(
                bank,
                day,
                usual_format(protocol),
                "finance:demo",
                bank_account(settings.banks[bank]),
            ),
            io.BytesIO(statement),
        )
        counts = {name: n for name, n in run["counts"].items() if n}
        runs[bank] = {"status": run["status"], "counts": counts, "run": run["id"]}
    return runs


WEBHOOK_CHECK = "every event reached the portal's webhook receiver, handled once"
WEBHOOK_WAIT = 20.0
"""Seconds to wait for the last webhooks: the first retry comes about 5 s after a failure."""


class DemoPortal:
    """The portal's side of the webhooks: the SDK receiver, failing each fifth new event once."""

    def __init__(self, jwks_url: str, clock: DemoClock) -> None:
        self.handled: list[str] = []
        self.arrived: set[str] = set()
        self.receiver = WebhookReceiver(self._on_event, jwks_url=jwks_url, clock=clock.timestamp)

    async def _on_event(self, webhook: Webhook) -> None:
        self.handled.append(webhook.id)

    async def _endpoint(self, request: web.Request) -> web.Response:
        webhook_id = request.headers.get("webhook-id", "")
        if webhook_id not in self.arrived:
            self.arrived.add(webhook_id)
            if len(self.arrived) % 5 == 0:
                return web.Response(status=503)
        return await self.receiver.handle(request)

    async def start(self, callback_url: str) -> tuple[web.AppRunner, str]:
        """Listen at the callback's path on a free port (the one init wrote may be taken);
        returns the runner and the callback URL to give the hub."""
        url = URL(callback_url)
        app = web.Application()
        app.router.add_post(url.path, self._endpoint)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.bind((url.host or "127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        return runner, str(url.with_port(sock.getsockname()[1]))

    async def settle(self, app: web.Application) -> tuple[dict[str, Any], bool]:
        """Wait until no event is pending (or ``WEBHOOK_WAIT``), then tally the deliveries;
        also whether the portal handled every stored event exactly once."""
        outbox = LedgerOutbox(app[keys.LEDGER])
        deadline = time.monotonic() + WEBHOOK_WAIT
        summary = await outbox.summary()
        while summary["events"].get("pending") and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            summary = await outbox.summary()
        async with app[keys.ENGINE].connect() as conn:
            stored = set((await conn.execute(select(events.c.id))).scalars())
        tally = {
            "events": summary["events"],
            "attempts": summary["attempts"],
            "retries": summary["retries"],
            "handled_by_portal": len(self.handled),
            "duplicates_dropped": self.receiver.duplicates,
            "rejected": self.receiver.rejected,
        }
        return tally, sorted(self.handled) == sorted(stored)


def _tally_ipns(deliveries: list[dict[str, Any]]) -> dict[str, Any]:
    """Every IPN the bank sent is either answered by the hub or lost on the way.

    A lost IPN never left the bank (fault ``lose_confirmation``) or got no answer (a
    connection error or timeout); copies and resends count once each, so the tally reads
    sent = answered + lost.
    """
    answers: Counter[str] = Counter()
    lost = 0
    for delivery in deliveries:
        if delivery.get("lost"):
            lost += 1
        for answer in delivery.get("answers", []):
            if "RspCode" in answer:
                answers[str(answer["RspCode"])] += 1
            elif "http_status" in answer:
                answers[f"http-{answer['http_status']}"] += 1
            else:
                lost += 1
    answered = sum(answers.values())
    return {
        "sent": answered + lost,
        "answered": answered,
        "lost": lost,
        "hub_answers": dict(sorted(answers.items())),
    }


def _print_summary(summary: dict[str, Any]) -> None:
    banks = ", ".join(summary["banks"])
    print(
        f"PayHub demo: hub + bank simulators ({banks}) + a portal, on a temporary SQLite database"
    )
    print(f"\n{summary['dossiers']} dossiers filed, one payment each, the banks in turn\n")
    print(f"  {'bank: what the payer / network did':<66} {'n':>3}  final status")
    for name, row in summary["scenarios"].items():
        shown = ", ".join(f"{s} {n}" for s, n in row["statuses"].items())
        print(f"  {name:<66} {row['payments']:>3}  {shown}")
    for bank, names in summary["skipped_scenarios"].items():
        print(f"  ({bank} cannot play: {'; '.join(names)})")
    print("\nstatuses:  " + ", ".join(f"{s} {n}" for s, n in sorted(summary["statuses"].items())))
    ipns = summary["ipns"]
    codes = ", ".join(f"{code} ×{n}" for code, n in ipns["hub_answers"].items())
    print(
        f"IPNs the bank sent: {ipns['sent']} = {ipns['answered']} answered by the hub "
        f"+ {ipns['lost']} lost on the way"
    )
    print(f"  the hub answered {codes or 'none'}")
    print("  (VNPay: 00 applied, 02 already confirmed, 97 bad signature: nothing changed;")
    print("   MoMo: http-204 taken, http-400 refused; VietQR: http-200 document taken)")
    rec = summary["recovery"]
    print(
        f"recovery: {rec['bank_queries']} bank queries; {rec['recovered_by_query']} payments "
        f"recovered by query, {rec['late_successes']} late success(es) after expiry (flagged), "
        f"{rec['expired']} expired; {rec['unknown_at_create']} order(s) left unknown by a timeout"
    )
    events_line = ", ".join(f"{t} {n}" for t, n in sorted(summary["events"]["by_type"].items()))
    print(f"portal events in the outbox: {summary['events']['stored']} ({events_line})")
    hooks = summary["webhooks"]
    states = hooks["events"]
    print(
        f"webhooks: {states.get('delivered', 0)} delivered, {states.get('pending', 0)} pending, "
        f"{states.get('dead', 0)} dead; {sum(hooks['attempts'].values())} attempts, "
        f"{hooks['retries']} retries; the portal handled {hooks['handled_by_portal']}, "
        f"dropped {hooks['duplicates_dropped']} duplicate(s)"
    )
    audit = summary["audit_chain"]
    for bank, run in summary["reconciliation"].items():
        counts = ", ".join(f"{name} {n}" for name, n in sorted(run["counts"].items()))
        print(f"reconciliation of {bank}'s statement: {run['status']}; {counts or 'no lines'}")
    for refund in summary["refunds"]:
        print(
            f"refund at {refund['bank']}, {refund['story']}: {refund['at_first']} at first, "
            f"{refund['status']} (settled by {refund['settled_by']}); "
            f"made {refund['made_at_bank']}× at the bank"
        )
    print(f"audit trail: {audit['entries']} entries, chain {'ok' if audit['ok'] else 'BROKEN'}")
    print("\nchecks:")
    for name, ok in summary["checks"].items():
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    print(f"\n{summary['seconds']} s")
