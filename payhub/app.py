"""The composition root: ``create_app`` builds and wires the whole hub.

Nothing is created at import time. Every resource with a lifetime (database engine,
HTTP client, ledger, background tasks) is a ``cleanup_ctx`` generator that tears down
after its ``yield``, in reverse order of creation.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta
from importlib.metadata import entry_points
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from payhub import keys
from payhub.api import banks as bank_routes
from payhub.api import finance as finance_routes
from payhub.api import ops as ops_routes
from payhub.api import portal as portal_routes
from payhub.api.auth import Credential, PrincipalKind
from payhub.api.middleware import STATEMENT_LIMIT, context_middleware, signature_middleware
from payhub.api.ratelimit import RateLimiter
from payhub.connectors.port import BankConnector, ConnectorContext
from payhub.connectors.registry import connector_class
from payhub.domain.clock import Clock, system_clock
from payhub.errors import ConfigError
from payhub.notify.lifecycle import DELIVERY, delivery_context
from payhub.observability.logging import register_secret
from payhub.observability.metrics import create_metrics
from payhub.recovery.lifecycle import recovery_context
from payhub.service.payments import IDEMPOTENCY_WINDOW, PaymentService
from payhub.service.refunds import RefundService
from payhub.service.routing import Router
from payhub.settings import LiveSettings, Settings, load_settings
from payhub.store import migrate
from payhub.store.engine import create_engine
from payhub.store.housekeeping import prune_idempotency_keys
from payhub.store.ledger import Ledger
from payhub.store.nonces import DatabaseNonceStore

SIMULATOR_GROUP = "payhub.simulators"
NONCE_LIFETIME = timedelta(seconds=600)

log = structlog.get_logger("payhub")


def notify_url(settings: Settings, bank: str) -> str:
    """Where a bank posts its confirmations for ``bank``."""
    return f"{settings.public_url}/banks/{bank}/notify"


def simulator_options(settings: Settings) -> dict[str, list[str]]:
    """Each bank's options that point at a simulator under the hub's own public URL."""
    prefix = f"{settings.public_url}/sim/"
    return {
        name: pointing
        for name, bank in settings.banks.items()
        if (
            pointing := [
                option
                for option, value in bank.options.items()
                if isinstance(value, str) and (value + "/").startswith(prefix)
            ]
        )
    }


def served_at(settings: Settings, listening_url: str) -> Settings:
    """The settings of a hub that serves its own simulators at ``listening_url``.

    ``payhub init`` writes one address into the public URL and into every bank's simulator
    URL. Served with ``--simulators`` elsewhere (another ``--port`` or ``--host``), payers
    would be sent, and the simulators' confirmations posted, to an address nobody answers,
    and payments would stay pending with no word. So the public URL, and every bank option
    under its ``/sim/``, follow the address the server really listens on.
    """
    listening_url = listening_url.rstrip("/")
    old = settings.public_url
    banks = dict(settings.banks)
    for name, options in simulator_options(settings).items():
        bank = settings.banks[name]
        moved = {option: listening_url + bank.options[option][len(old) :] for option in options}
        banks[name] = dataclasses.replace(bank, options={**bank.options, **moved})
    return dataclasses.replace(settings, public_url=listening_url, banks=banks)


def credentials_from(settings: Settings) -> dict[str, Credential]:
    """Every request key, by keyid, with the principal it belongs to."""
    owners = [(PrincipalKind.PORTAL, p.id, p.keys) for p in settings.portals.values()] + [
        (PrincipalKind.FINANCE, u.id, u.keys) for u in settings.finance_users.values()
    ]
    return {
        key.keyid: Credential(
            keyid=key.keyid, kind=kind, principal=owner, algorithm=key.algorithm, key=key.key
        )
        for kind, owner, keys in owners
        for key in keys
    }


def check_banks(settings: Settings) -> dict[str, type[BankConnector]]:
    """Resolve each configured bank's connector and check its options at start."""
    classes: dict[str, type[BankConnector]] = {}
    for name, bank in settings.banks.items():
        cls = connector_class(bank.connector)
        problems = cls.check_options(bank.options)
        if problems:
            raise ConfigError(f"banks.{name}: {problems[0]}")
        classes[name] = cls
    return classes


def simulator_factory(protocol: str) -> Callable[..., web.Application]:
    for ep in entry_points(group=SIMULATOR_GROUP):
        if ep.name == protocol:
            factory: Callable[..., web.Application] = ep.load()
            return factory
    raise ConfigError(f"no simulator is installed for bank protocol {protocol!r}")


def create_app(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    simulators: bool = False,
    migrate_on_start: bool = False,
    connector_overrides: Mapping[str, BankConnector] | None = None,
    freeze_at_start: bool = False,
    reload_on_sighup: bool = False,
    file_settings: Settings | None = None,
) -> web.Application:
    """Build the hub. ``simulators`` also mounts each bank's simulator at ``/sim/<bank>/``.

    ``freeze_at_start`` (for ``payhub serve``, one hub per process) moves everything
    alive once the hub has started out of the garbage collector's sight: see
    :func:`freeze_startup_objects`. ``reload_on_sighup`` (also ``serve``) makes SIGHUP
    reload the principals and keys of ``payhub.toml`` (:func:`reload_principals`);
    ``file_settings`` is the file as read, when ``settings`` were changed from it.
    """
    classes = check_banks(settings)
    _register_secrets(settings)
    app = web.Application(
        middlewares=[context_middleware, signature_middleware],
        client_max_size=STATEMENT_LIMIT,
        handler_args={"max_field_size": 16384},
    )
    live = LiveSettings(settings)
    if file_settings is not None:
        live.remember_file(file_settings)
    app[keys.SETTINGS] = live
    app[keys.CLOCK] = clock
    app[keys.METRICS] = create_metrics()
    app[keys.CREDENTIALS] = credentials_from(settings)
    app[keys.RATE_LIMITER] = RateLimiter(settings.rate_limit_per_second)
    app.add_routes(ops_routes.routes)
    app.add_routes(portal_routes.routes)
    app.add_routes(bank_routes.routes)
    app.add_routes(finance_routes.routes)

    async def database(app: web.Application) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        try:
            if migrate_on_start:
                await migrate.upgrade(engine)
            elif not await migrate.is_current(engine):
                raise ConfigError(
                    "the database schema is not current: run "
                    f"`payhub db upgrade --config {settings.config_path}`"
                )
            app[keys.ENGINE] = engine
            ledger = Ledger(engine, clock, on_batch=app[keys.METRICS].ledger_batch_size.observe)
            await ledger.start()
            app[keys.LEDGER] = ledger
            app[keys.NONCES] = DatabaseNonceStore(ledger)
            yield
            await ledger.close()
        finally:
            await engine.dispose()

    async def banks(app: web.Application) -> AsyncIterator[None]:
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        app[keys.HTTP] = http
        connectors: dict[str, BankConnector] = {}
        for name, cls in classes.items():
            context = ConnectorContext(
                http=http, clock=clock, notify_url=notify_url(settings, name)
            )
            connectors[name] = cls(name, settings.banks[name].options, context)
        connectors.update(connector_overrides or {})
        app[keys.CONNECTORS] = connectors
        app[keys.PAYMENTS] = PaymentService(
            ledger=app[keys.LEDGER],
            connectors=connectors,
            router=Router(connectors, settings.default_bank, clock, settings.routing),
            clock=clock,
            recovery=settings.recovery,
        )
        app[keys.REFUNDS] = RefundService(
            ledger=app[keys.LEDGER], connectors=connectors, policy=settings.recovery
        )
        yield
        await http.close()

    async def housekeeping(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_housekeeping(app), name="payhub-housekeeping")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.extend([database, banks, housekeeping])
    app.cleanup_ctx.append(delivery_context(settings, clock))
    app.cleanup_ctx.append(recovery_context(settings.recovery, clock))
    if reload_on_sighup:
        app.cleanup_ctx.append(_reload_on_sighup)
    if freeze_at_start:
        app.on_startup.append(freeze_startup_objects)

    if simulators:
        for name, bank in settings.banks.items():
            factory = simulator_factory(bank.connector)
            sub = factory(bank.options, notify_url=notify_url(settings, name), clock=clock)
            app.add_subapp(f"/sim/{name}/", sub)
    return app


async def freeze_startup_objects(_app: web.Application) -> None:
    """Stop the garbage collector from walking what start-up built, on every collection.

    After start-up the process holds a few hundred thousand long-lived objects (modules,
    SQLAlchemy's compiled statements, aiohttp's router, the settings). Each full
    collection walked all of them again, about a tenth of a request's CPU under load
    (``payhub bench``). ``gc.freeze`` puts them in a permanent generation; what requests
    allocate is collected as before. Runs after every ``cleanup_ctx`` start-up, which
    aiohttp runs first.
    """
    gc.collect()
    gc.freeze()


@dataclasses.dataclass(frozen=True)
class Reloaded:
    """What a reload did: principals and keys now served, and what it could not apply."""

    portals: int
    finance_users: int
    hub_keys: int
    needs_restart: tuple[str, ...] = ()
    refused: str | None = None
    """Why nothing changed (the file does not parse or validate): the hub keeps serving
    what it had."""


def reload_principals(app: web.Application) -> Reloaded:
    """Re-read ``payhub.toml`` and serve its portals, finance users and hub keys.

    ``payhub portal add``, ``finance add`` and ``keys rotate`` then take effect without a
    restart: the next request is checked against the new keys (a removed key is refused
    at once), webhooks are signed with the new hub keys and sent to the new callbacks, and
    the JWKS publishes them. A file that does not load changes nothing. Other changed
    sections are named in the log: they need a restart.
    """
    live = app[keys.SETTINGS]
    try:
        loaded = load_settings(live.current.config_path)
    except ConfigError as exc:
        log.error("config_reload_refused", reason=str(exc))
        current = live.current
        return Reloaded(
            len(current.portals), len(current.finance_users), len(current.hub_keys), (), str(exc)
        )
    needs_restart = tuple(live.reload(loaded))
    settings = live.current
    _register_secrets(settings)
    credentials = app[keys.CREDENTIALS]
    fresh = credentials_from(settings)
    credentials.clear()
    credentials.update(fresh)
    delivery = app.get(DELIVERY)
    if delivery is not None:
        delivery.use_principals(settings.portals, settings.hub_keys)
    done = Reloaded(
        len(settings.portals), len(settings.finance_users), len(settings.hub_keys), needs_restart
    )
    log.info(
        "config_reloaded",
        portals=done.portals,
        finance_users=done.finance_users,
        hub_keys=done.hub_keys,
        needs_restart=list(needs_restart) or None,
    )
    return done


async def _reload_on_sighup(app: web.Application) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reload_principals, app)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


def _register_secrets(settings: Settings) -> None:
    """Every configured secret is redacted wherever it would appear in a log line."""
    for bank in settings.banks.values():
        for name, value in bank.options.items():
            if isinstance(value, str) and any(w in name for w in ("secret", "key", "password")):
                register_secret(value)
    for portal in settings.portals.values():
        register_secret(portal.whsec)
        for key in portal.keys:
            if isinstance(key.key, bytes):
                register_secret(key.key)
    for user in settings.finance_users.values():
        for key in user.keys:
            if isinstance(key.key, bytes):
                register_secret(key.key)


async def _housekeeping(app: web.Application) -> None:
    """Every minute: forget nonces no signature can reuse and idempotency keys past 24 h."""
    nonces: Any = app[keys.NONCES]
    while True:
        await asyncio.sleep(60)
        now = app[keys.CLOCK]()
        try:
            await nonces.prune(now - NONCE_LIFETIME)
            await prune_idempotency_keys(app[keys.LEDGER], now - IDEMPOTENCY_WINDOW)
        except Exception:
            log.exception("housekeeping_failed")
