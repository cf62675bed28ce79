"""Every object the aiohttp application holds, each under a typed ``web.AppKey``."""

from __future__ import annotations

from aiohttp import ClientSession, web
from sqlalchemy.ext.asyncio import AsyncEngine

from payhub.api.auth import Credential, NonceStore
from payhub.api.ratelimit import RateLimiter
from payhub.connectors.port import BankConnector
from payhub.domain.clock import Clock
from payhub.observability.metrics import Metrics
from payhub.service.payments import PaymentService
from payhub.service.refunds import RefundService
from payhub.settings import LiveSettings
from payhub.store.ledger import Ledger

SETTINGS = web.AppKey("settings", LiveSettings)
"""What the hub serves with; ``.current`` per request (a SIGHUP reloads principals, keys)."""
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
ENGINE = web.AppKey("engine", AsyncEngine)
LEDGER = web.AppKey("ledger", Ledger)
HTTP = web.AppKey("http", ClientSession)
CONNECTORS = web.AppKey("connectors", dict[str, BankConnector])
PAYMENTS = web.AppKey("payments", PaymentService)
REFUNDS = web.AppKey("refunds", RefundService)
CREDENTIALS = web.AppKey("credentials", dict[str, Credential])
NONCES = web.AppKey("nonces", NonceStore)
METRICS = web.AppKey("metrics", Metrics)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
