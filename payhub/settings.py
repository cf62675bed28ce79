"""The one configuration file, ``payhub.toml``, validated into frozen dataclasses.

Everything is checked at start so that a bad file fails with one clear line naming the
key, never later inside a request. Relative paths (keys, the SQLite file) are resolved
against the configuration file's folder so that a setup made by ``payhub init DIR``
works from any working directory.

::

    [hub]
    database_url = "sqlite:///payhub.db"     # or postgresql://user@host/db
    timezone = "Asia/Ho_Chi_Minh"
    public_url = "http://127.0.0.1:8080"     # where banks send confirmations
    host = "127.0.0.1"
    port = 8080
    default_bank = "vnpay"                   # when the portal names none

    [[hub.signing_keys]]                     # newest first; the first signs
    kid = "hub-20261128"
    private_key_file = "keys/hub-20261128.pem"
    # expires_at = 2026-12-05T00:00:00Z      # set by `payhub keys rotate` on the old key

    [portals.demo]
    callback_url = "http://127.0.0.1:9000/payhub/events"
    whsec = "whsec_…"                        # optional: adds HMAC v1 webhook signatures
    [[portals.demo.keys]]
    keyid = "demo"
    algorithm = "ed25519"                    # or "hmac-sha256" with secret_file
    public_key_file = "keys/demo.pub.pem"

    [finance.finance]
    [[finance.finance.keys]]
    keyid = "finance"
    algorithm = "ed25519"
    public_key_file = "keys/finance.pub.pem"

    [banks.vnpay]                            # a bank: a name bound to a connector
    connector = "vnpay"
    tmn_code = "PAYHUB01"                    # the rest are the connector's options
    hash_secret = "…"
    base_url = "http://127.0.0.1:8080/sim/vnpay"

    [routing]                                # all optional; absent: default_bank first,
    order = ["vnpay"]                        # then the banks in file order
    # when the portal names no bank, these banks go first in this order; others follow
    # (hub.default_bank, if also given, must be the first one)

    [routing.breaker]                        # a circuit breaker per bank, fed by real calls
    failure_threshold = 5                    # open after this many failures in a row
    failure_rate_percent = 50                # or this share failed in the window (0: off)
    min_calls = 10                           # … once the window holds this many calls
    window_seconds = 60
    open_seconds = 30                        # then let one trial call through

    [routing.banks.vnpay]                    # limits beyond the connector's, when routed
    min_amount = 1_000                       # (a bank the portal names is held only to
    max_amount = 500_000_000                 # its connector's limits)
    kinds = ["fee", "charge", "tax", "social_insurance", "fine"]   # every item's kind
    agencies = ["H29.*", "BNV"]              # the dossier's agency; "X.*" is X and below

    [[routing.rules]]                        # first match puts its banks first
    kinds = ["tax"]                          # criteria: kinds, agencies, min/max_amount
    agencies = ["H29.*"]
    prefer = ["vnpay"]

    [recovery]                               # all optional: asking banks about late payments
    enabled = true                           # false: this hub process runs no recovery worker
    pending_after = 120                      # a pending payment is first queried after this
    query_delays = [10, 30, 60, 300, 900, 3600]   # then these waits; the last one repeats
    late_window = 3600                       # expired payments are queried this long more
    lease = 60                               # a claimed payment stays with one worker: keep
                                             # it above the banks' query timeouts (15 s)
    batch = 64                               # payments claimed per round
    poll_seconds = 1                         # pause when nothing was due
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from payhub.domain.requests import ItemKind
from payhub.errors import ConfigError
from payhub.recovery.schedule import RecoveryPolicy
from payhub.routing.config import (
    AgencyPattern,
    BankScope,
    BreakerPolicy,
    PreferenceRule,
    RoutingSettings,
)

SUPPORTED_TIMEZONE = "Asia/Ho_Chi_Minh"
KEY_ALGORITHMS = ("ed25519", "hmac-sha256")
MIN_HMAC_SECRET_BYTES = 32
MIN_WHSEC_BYTES = 24
"""Standard Webhooks: a ``whsec_`` secret is 24 to 64 random bytes, base64-encoded."""
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class RequestKey:
    """A key a portal or finance user signs requests with; the hub holds only the public half."""

    keyid: str
    algorithm: str
    key: Ed25519PublicKey | bytes = field(repr=False)
    """An HMAC key is a shared secret: it never appears in a repr, a log or a test report."""


@dataclass(frozen=True)
class PortalSettings:
    id: str
    callback_url: str
    keys: tuple[RequestKey, ...]
    whsec: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class FinanceUserSettings:
    id: str
    keys: tuple[RequestKey, ...]


@dataclass(frozen=True)
class BankSettings:
    """A configured bank: its name, the connector protocol that serves it, and its options."""

    name: str
    connector: str
    options: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class HubKey:
    """One of the hub's own Ed25519 signing keys (webhooks, JWKS)."""

    kid: str
    private_key: Ed25519PrivateKey = field(repr=False)
    retired: bool = False
    expires_at: datetime | None = None
    """End of a rotated-out key's overlap: until then it is still published and still signs."""

    def valid_at(self, moment: datetime) -> bool:
        """Published in the JWKS and signing ``v1a`` at ``moment``."""
        return not self.retired and (self.expires_at is None or moment < self.expires_at)


@dataclass(frozen=True)
class Settings:
    config_path: Path
    database_url: str
    public_url: str
    host: str
    port: int
    timezone: str
    default_bank: str | None
    hub_keys: tuple[HubKey, ...]
    portals: Mapping[str, PortalSettings]
    finance_users: Mapping[str, FinanceUserSettings]
    banks: Mapping[str, BankSettings]
    rate_limit_per_second: int = 0
    """Per-portal request rate limit; 0 turns it off."""
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    recovery: RecoveryPolicy = field(default_factory=RecoveryPolicy)


RELOADABLE = ("hub_keys", "portals", "finance_users")
"""What a running hub takes from a changed ``payhub.toml`` on SIGHUP: who may call it and
the keys it signs with. Everything else (database, address, banks, routing, recovery)
is read once at start: changing it under a running hub could strand work in flight."""


class LiveSettings:
    """The settings a running hub serves with; a reload swaps in new principals and keys.

    Readers take ``current`` for each request, so a reload is seen by the next one. The
    startup reading of the file is kept to tell what else changed (and needs a restart).
    """

    def __init__(self, settings: Settings) -> None:
        self.current = settings
        self._file = settings

    def reload(self, loaded: Settings) -> list[str]:
        """Take ``loaded``'s principals and keys; the other changed sections, by name."""
        self.current = dataclasses.replace(
            self.current, **{name: getattr(loaded, name) for name in RELOADABLE}
        )
        changed = [
            f.name
            for f in dataclasses.fields(Settings)
            if f.name not in (*RELOADABLE, "config_path")
            and getattr(loaded, f.name) != getattr(self._file, f.name)
        ]
        return changed

    def remember_file(self, settings: Settings) -> None:
        """The file as read at start, before ``serve`` moved addresses (``--simulators``)."""
        self._file = settings


def load_settings(path: str | Path) -> Settings:
    """Read and validate ``payhub.toml``; raises ``ConfigError`` with one clear line."""
    config_path = Path(path).resolve()
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {config_path}") from exc
    except IsADirectoryError as exc:
        raise ConfigError(not_a_file(config_path)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {config_path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path} is not valid TOML: {exc}") from exc
    return parse_settings(raw, config_path)


def not_a_file(config_path: Path) -> str:
    """What to say when ``--config`` names a folder, such as the one ``payhub init`` wrote."""
    return (
        f"cannot read {config_path}: it is a folder; --config takes the file, "
        f"e.g. {config_path / 'payhub.toml'}"
    )


def parse_settings(raw: Mapping[str, Any], config_path: Path) -> Settings:
    """Validate an already-parsed TOML document."""
    base = config_path.absolute().parent
    _only(raw, "", {"hub", "portals", "finance", "banks", "routing", "recovery"})
    hub = _table(raw, "hub")
    _only(
        hub,
        "hub",
        {
            "database_url",
            "timezone",
            "public_url",
            "host",
            "port",
            "default_bank",
            "signing_keys",
            "rate_limit_per_second",
        },
    )
    timezone = _str(hub, "hub.timezone", default=SUPPORTED_TIMEZONE)
    if timezone != SUPPORTED_TIMEZONE:
        raise ConfigError(f"hub.timezone must be {SUPPORTED_TIMEZONE!r}, not {timezone!r}")
    database_url = resolve_database_url(_str(hub, "hub.database_url"), base)
    public_url = _str(hub, "hub.public_url", default="http://127.0.0.1:8080").rstrip("/")
    if not public_url.startswith(("http://", "https://")):
        raise ConfigError("hub.public_url must be an http(s) URL")
    port = hub.get("port", 8080)
    if type(port) is not int or not 0 <= port <= 65535:
        raise ConfigError("hub.port must be an integer 0–65535")
    rate = hub.get("rate_limit_per_second", 0)
    if type(rate) is not int or rate < 0:
        raise ConfigError("hub.rate_limit_per_second must be a non-negative integer")

    hub_keys = tuple(
        _hub_key(entry, f"hub.signing_keys[{i}]", base)
        for i, entry in enumerate(_list(hub, "hub.signing_keys"))
    )
    if not hub_keys:
        raise ConfigError("hub.signing_keys needs at least one key (payhub init makes one)")
    kids = [key.kid for key in hub_keys]
    for kid in kids:
        if kids.count(kid) > 1:
            raise ConfigError(f"hub.signing_keys: kid {kid!r} is used twice")

    portals: dict[str, PortalSettings] = {}
    for portal_id, table in _table(raw, "portals", required=False).items():
        _check_id(portal_id, "portals")
        where = f"portals.{portal_id}"
        table = _as_table(table, where)
        _only(table, where, {"callback_url", "keys", "whsec"})
        whsec = table.get("whsec")
        if whsec is not None:
            _check_whsec(whsec, f"{where}.whsec")
        callback_url = _str(table, f"{where}.callback_url")
        if not callback_url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.callback_url must be an http(s) URL")
        portals[portal_id] = PortalSettings(
            id=portal_id,
            callback_url=callback_url,
            keys=_request_keys(table, where, base),
            whsec=whsec,
        )
    finance_users: dict[str, FinanceUserSettings] = {}
    for user_id, table in _table(raw, "finance", required=False).items():
        _check_id(user_id, "finance")
        where = f"finance.{user_id}"
        table = _as_table(table, where)
        _only(table, where, {"keys"})
        finance_users[user_id] = FinanceUserSettings(
            id=user_id, keys=_request_keys(table, where, base)
        )

    keyids: dict[str, str] = {}
    for owner, keys in [(f"portals.{p.id}", p.keys) for p in portals.values()] + [
        (f"finance.{f.id}", f.keys) for f in finance_users.values()
    ]:
        for key in keys:
            if keyids.get(key.keyid) == owner:
                raise ConfigError(f"{owner}.keys: keyid {key.keyid!r} is used twice")
            if key.keyid in keyids:
                raise ConfigError(
                    f"keyid {key.keyid!r} is used by both {keyids[key.keyid]} and {owner}: "
                    "a key belongs to exactly one principal"
                )
            keyids[key.keyid] = owner

    banks: dict[str, BankSettings] = {}
    for name, table in _table(raw, "banks", required=False).items():
        _check_id(name, "banks")
        where = f"banks.{name}"
        table = _as_table(table, where)
        connector = _str(table, f"{where}.connector")
        options = {k: v for k, v in table.items() if k != "connector"}
        banks[name] = BankSettings(name=name, connector=connector, options=options)
    default_bank = hub.get("default_bank")
    if default_bank is not None:
        default_bank = _str(hub, "hub.default_bank")
        if default_bank not in banks:
            configured = ", ".join(sorted(banks)) or "none"
            raise ConfigError(
                f"hub.default_bank {default_bank!r} is not a configured bank "
                f"(configured: {configured})"
            )
    routing = _routing(_table(raw, "routing", required=False), list(banks))
    if default_bank is not None and routing.order and routing.order[0] != default_bank:
        raise ConfigError(
            f"hub.default_bank {default_bank!r} is not first in routing.order: "
            "drop one of them or make them agree"
        )

    return Settings(
        config_path=config_path,
        database_url=database_url,
        public_url=public_url,
        host=_str(hub, "hub.host", default="127.0.0.1"),
        port=port,
        timezone=timezone,
        default_bank=default_bank,
        hub_keys=hub_keys,
        portals=portals,
        finance_users=finance_users,
        banks=banks,
        rate_limit_per_second=rate,
        routing=routing,
        recovery=_recovery(_table(raw, "recovery", required=False)),
    )


def _recovery(table: Mapping[str, Any]) -> RecoveryPolicy:
    """``[recovery]``: the bank-query schedule (seconds; see ``payhub.recovery.schedule``)."""
    defaults = RecoveryPolicy()
    _only(
        table,
        "recovery",
        {
            "enabled",
            "pending_after",
            "query_delays",
            "late_window",
            "lease",
            "batch",
            "poll_seconds",
        },
    )

    def seconds(name: str, default: float, *, low: float, high: float) -> float:
        value = table.get(name, default)
        if type(value) not in (int, float) or not low <= value <= high:
            raise ConfigError(
                f"recovery.{name} must be a number of seconds from {low:g} to {high:g}"
            )
        return float(value)

    enabled = table.get("enabled", True)
    if type(enabled) is not bool:
        raise ConfigError("recovery.enabled must be true or false")
    delays = table.get("query_delays", list(defaults.query_delays))
    if (
        not isinstance(delays, list)
        or not 1 <= len(delays) <= 32
        or any(type(d) not in (int, float) or not 0.001 <= d <= 86_400 for d in delays)
    ):
        raise ConfigError(
            "recovery.query_delays must be a list of 1–32 numbers of seconds from 0.001 to 86400"
        )
    batch = table.get("batch", defaults.batch)
    if type(batch) is not int or not 1 <= batch <= 1000:
        raise ConfigError("recovery.batch must be an integer from 1 to 1000")
    lease = seconds("lease", defaults.lease, low=1, high=3600)
    return RecoveryPolicy(
        enabled=enabled,
        pending_after=seconds("pending_after", defaults.pending_after, low=0, high=86_400),
        query_delays=tuple(float(d) for d in delays),
        late_window=seconds("late_window", defaults.late_window, low=0, high=30 * 86_400),
        lease=lease,
        batch=batch,
        poll_seconds=seconds("poll_seconds", defaults.poll_seconds, low=0.01, high=60),
    )


_AGENCY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KINDS = ", ".join(kind.value for kind in ItemKind)
MAX_ROUTING_AMOUNT = 100_000_000_000


def _routing(table: Mapping[str, Any], banks: list[str]) -> RoutingSettings:
    """The ``[routing]`` section; every bank it names must be a configured bank."""
    _only(table, "routing", {"order", "breaker", "banks", "rules"})
    order = _bank_names(table, "routing.order", banks, required=False)
    breaker = _breaker(_as_table(table.get("breaker", {}), "routing.breaker"))
    scopes: dict[str, BankScope] = {}
    for name, entry in _as_table(table.get("banks", {}), "routing.banks").items():
        where = f"routing.banks.{name}"
        if name not in banks:
            raise ConfigError(f"{where}: {name!r} is not a configured bank")
        entry = _as_table(entry, where)
        _only(entry, where, {"min_amount", "max_amount", "kinds", "agencies"})
        low, high = _amount_range(entry, where)
        scopes[name] = BankScope(
            min_amount=low,
            max_amount=high,
            kinds=_kinds(entry, f"{where}.kinds"),
            agencies=_agencies(entry, f"{where}.agencies"),
        )
    rules = []
    for i, entry in enumerate(_list(table, "routing.rules")):
        where = f"routing.rules[{i}]"
        entry = _as_table(entry, where)
        _only(entry, where, {"prefer", "kinds", "agencies", "min_amount", "max_amount"})
        low, high = _amount_range(entry, where)
        rule = PreferenceRule(
            prefer=_bank_names(entry, f"{where}.prefer", banks, required=True),
            kinds=_kinds(entry, f"{where}.kinds"),
            agencies=_agencies(entry, f"{where}.agencies"),
            min_amount=low,
            max_amount=high,
        )
        if (rule.kinds, rule.agencies, low, high) == (None, None, None, None):
            raise ConfigError(
                f"{where} matches every payment: give kinds, agencies, min_amount or "
                "max_amount (or put its banks in routing.order)"
            )
        rules.append(rule)
    return RoutingSettings(order=order, banks=scopes, rules=tuple(rules), breaker=breaker)


def _breaker(table: Mapping[str, Any]) -> BreakerPolicy:
    where = "routing.breaker"
    defaults = BreakerPolicy()
    bounds = {
        "failure_threshold": (1, 1000),
        "failure_rate_percent": (0, 100),
        "min_calls": (1, 100_000),
        "window_seconds": (1, 3600),
        "open_seconds": (1, 3600),
    }
    _only(table, where, set(bounds))
    values: dict[str, int] = {}
    for key, (low, high) in bounds.items():
        value = table.get(key, getattr(defaults, key))
        if type(value) is not int or not low <= value <= high:
            raise ConfigError(f"{where}.{key} must be an integer {low}–{high}")
        values[key] = value
    return BreakerPolicy(**values)


def _bank_names(
    table: Mapping[str, Any], at: str, banks: list[str], *, required: bool
) -> tuple[str, ...]:
    key = at.rsplit(".", 1)[-1]
    if key not in table and not required:
        return ()
    value = table.get(key)
    if value is None:
        raise ConfigError(f"missing {at}")
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{at} must be a non-empty array of bank names")
    for name in value:
        if name not in banks:
            configured = ", ".join(banks) or "none"
            raise ConfigError(f"{at}: {name!r} is not a configured bank (configured: {configured})")
        if value.count(name) > 1:
            raise ConfigError(f"{at}: {name!r} is named twice")
    return tuple(value)


def _kinds(table: Mapping[str, Any], at: str) -> frozenset[str] | None:
    value = table.get("kinds")
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{at} must be a non-empty array of item kinds ({_KINDS})")
    for kind in value:
        if not isinstance(kind, str) or kind not in {k.value for k in ItemKind}:
            raise ConfigError(f"{at}: {kind!r} is not an item kind ({_KINDS})")
    return frozenset(value)


def _agencies(table: Mapping[str, Any], at: str) -> tuple[AgencyPattern, ...] | None:
    value = table.get("agencies")
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{at} must be a non-empty array of agency codes")
    patterns = []
    for text in value:
        code = text[:-2] if isinstance(text, str) and text.endswith(".*") else text
        if not isinstance(code, str) or not _AGENCY.fullmatch(code):
            raise ConfigError(
                f"{at}: {text!r} is not an agency code (letters, digits, '.', '_', '-'), "
                "optionally ending in '.*' for the agency and everything under it"
            )
        patterns.append(AgencyPattern.parse(text))
    return tuple(patterns)


def _amount_range(table: Mapping[str, Any], at: str) -> tuple[int | None, int | None]:
    found: list[int | None] = []
    for key in ("min_amount", "max_amount"):
        value = table.get(key)
        if value is not None and (type(value) is not int or not 1 <= value <= MAX_ROUTING_AMOUNT):
            raise ConfigError(
                f"{at}.{key} must be an integer number of VND, 1–{MAX_ROUTING_AMOUNT:,}"
            )
        found.append(value)
    low, high = found
    if low is not None and high is not None and low > high:
        raise ConfigError(f"{at}: min_amount {low:,} is above max_amount {high:,}")
    return low, high


def resolve_database_url(url: str, base: Path) -> str:
    """Pick the async driver and anchor a relative SQLite path at the config folder."""
    if url.startswith(("sqlite://", "sqlite+aiosqlite://")):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if not path or path == ":memory:":
            raise ConfigError("hub.database_url: SQLite needs a file path (sqlite:///payhub.db)")
        file = Path(path)
        if not file.is_absolute():
            file = (base / file).absolute()
        return f"sqlite+aiosqlite:///{file}"
    if url.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://")):
        resolved = "postgresql+asyncpg://" + url.split("://", 1)[1]
        try:
            database = make_url(resolved).database
        except (ArgumentError, ValueError) as exc:
            raise ConfigError(f"hub.database_url is not a valid PostgreSQL URL: {exc}") from exc
        if not database:
            raise ConfigError(
                "hub.database_url must name the database (postgresql://user@host:5432/payhub)"
            )
        return resolved
    raise ConfigError("hub.database_url must start with sqlite:/// or postgresql://")


def _request_keys(table: Mapping[str, Any], where: str, base: Path) -> tuple[RequestKey, ...]:
    keys = []
    for i, entry in enumerate(_list(table, f"{where}.keys")):
        at = f"{where}.keys[{i}]"
        entry = _as_table(entry, at)
        _only(entry, at, {"keyid", "algorithm", "public_key", "public_key_file", "secret_file"})
        keyid = _str(entry, f"{at}.keyid")
        _check_id(keyid, f"{at}.keyid")
        algorithm = _str(entry, f"{at}.algorithm", default="ed25519")
        key: Ed25519PublicKey | bytes
        if algorithm == "ed25519":
            _only(entry, at, {"keyid", "algorithm", "public_key", "public_key_file"})
            if "public_key" in entry and "public_key_file" in entry:
                raise ConfigError(f"{at}: give public_key or public_key_file, not both")
            if "public_key" in entry:
                pem = _str(entry, f"{at}.public_key")
            else:
                data = _read(base, _str(entry, f"{at}.public_key_file"), at)
                try:
                    pem = data.decode("ascii")
                except UnicodeDecodeError as exc:
                    raise ConfigError(f"{at}.public_key_file is not a PEM file") from exc
            key = _ed25519_public(pem, at)
        elif algorithm == "hmac-sha256":
            _only(entry, at, {"keyid", "algorithm", "secret_file"})
            key = _read(base, _str(entry, f"{at}.secret_file"), at)
            if len(key) < MIN_HMAC_SECRET_BYTES:
                raise ConfigError(
                    f"{at}.secret_file: an hmac-sha256 secret needs at least "
                    f"{MIN_HMAC_SECRET_BYTES} bytes, this one has {len(key)}"
                )
        else:
            raise ConfigError(f"{at}.algorithm must be one of {', '.join(KEY_ALGORITHMS)}")
        keys.append(RequestKey(keyid=keyid, algorithm=algorithm, key=key))
    if not keys:
        raise ConfigError(f"{where}.keys needs at least one key")
    return tuple(keys)


def _hub_key(entry: Any, at: str, base: Path) -> HubKey:
    entry = _as_table(entry, at)
    _only(entry, at, {"kid", "private_key_file", "retired", "expires_at"})
    kid = _str(entry, f"{at}.kid")
    _check_id(kid, f"{at}.kid")
    data = _read(base, _str(entry, f"{at}.private_key_file"), at)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise ConfigError(f"{at}.private_key_file must not be password-protected") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{at}.private_key_file is not a PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{at}: hub signing keys must be Ed25519")
    retired = entry.get("retired", False)
    if not isinstance(retired, bool):
        raise ConfigError(f"{at}.retired must be true or false")
    expires_at = entry.get("expires_at")
    if expires_at is not None and (
        not isinstance(expires_at, datetime) or expires_at.tzinfo is None
    ):
        raise ConfigError(f"{at}.expires_at must be a date-time with an offset")
    return HubKey(kid=kid, private_key=key, retired=retired, expires_at=expires_at)


def _ed25519_public(pem: str, at: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{at}: not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{at}: the public key is not Ed25519")
    return key


def _read(base: Path, name: str, at: str) -> bytes:
    path = Path(name) if Path(name).is_absolute() else base / name
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{at}: cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # a NUL byte in the name
        raise ConfigError(f"{at}: cannot read {name!r}: {exc}") from exc


def _check_whsec(value: Any, at: str) -> None:
    if not isinstance(value, str) or not value.startswith("whsec_"):
        raise ConfigError(f"{at} must be a string starting with 'whsec_'")
    try:
        secret = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{at}: the part after 'whsec_' must be base64") from exc
    if len(secret) < MIN_WHSEC_BYTES:
        raise ConfigError(f"{at}: the secret needs at least {MIN_WHSEC_BYTES} bytes")


def _check_id(value: str, at: str) -> None:
    if not _ID.fullmatch(value):
        raise ConfigError(
            f"{at}: {value!r} is not a valid id (1–64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit)"
        )


def _table(raw: Mapping[str, Any], key: str, *, required: bool = True) -> Mapping[str, Any]:
    if key not in raw:
        if required:
            raise ConfigError(f"missing [{key}] table")
        return {}
    return _as_table(raw[key], key)


def _as_table(value: Any, at: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{at} must be a table")
    return value


def _list(table: Mapping[str, Any], at: str) -> list[Any]:
    value = table.get(at.rsplit(".", 1)[-1], [])
    if not isinstance(value, list):
        raise ConfigError(f"{at} must be an array of tables ([[{at}]])")
    return value


def _str(table: Mapping[str, Any], at: str, *, default: str | None = None) -> str:
    key = at.rsplit(".", 1)[-1]
    value = table.get(key, default)
    if value is None:
        raise ConfigError(f"missing {at}")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{at} must be a non-empty string")
    return value


def _only(table: Mapping[str, Any], at: str, allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        where = f" in [{at}]" if at else ""
        raise ConfigError(
            f"unknown key {unknown[0]!r}{where}; allowed: {', '.join(sorted(allowed))}"
        )
