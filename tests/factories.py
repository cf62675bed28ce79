"""Test worlds: keys, settings and signed clients, built the way an operator would."""

from __future__ import annotations

import copy
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from payhub.app import create_app
from payhub.domain.clock import Clock, system_clock
from payhub.portal.client import PortalClient
from payhub.settings import Settings, parse_settings
from payhub.setup import public_pem, write_private_key

VNPAY_TMN = "PAYHUB01"
VNPAY_SECRET = "PAYHUBTESTSECRET0123456789ABCDEF"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class World:
    """Everything a test needs to talk to a hub: settings and the principals' private keys."""

    settings: Settings
    port: int
    portal_key: Ed25519PrivateKey
    other_portal_secret: bytes = field(repr=False)
    finance_key: Ed25519PrivateKey
    clock: Clock = field(default=system_clock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def settings_document(tmp_path: Path, database_url: str, port: int) -> tuple[dict[str, Any], World]:
    keys = tmp_path / "keys"
    keys.mkdir(exist_ok=True)
    hub_key = Ed25519PrivateKey.generate()
    write_private_key(keys / "hub.pem", hub_key)
    portal_key = Ed25519PrivateKey.generate()
    finance_key = Ed25519PrivateKey.generate()
    other_secret = secrets.token_bytes(32)
    (keys / "other.secret").write_bytes(other_secret)
    base = f"http://127.0.0.1:{port}"
    doc: dict[str, Any] = {
        "hub": {
            "database_url": database_url,
            "public_url": base,
            "port": port,
            "default_bank": "vnpay",
            "signing_keys": [{"kid": "hub-test", "private_key_file": "keys/hub.pem"}],
        },
        "portals": {
            "demo": {
                "callback_url": "http://127.0.0.1:9/events",
                "keys": [
                    {"keyid": "demo", "algorithm": "ed25519", "public_key": public_pem(portal_key)}
                ],
            },
            "other": {
                "callback_url": "http://127.0.0.1:9/events",
                "keys": [
                    {
                        "keyid": "other",
                        "algorithm": "hmac-sha256",
                        "secret_file": "keys/other.secret",
                    }
                ],
            },
        },
        "finance": {
            "finance": {
                "keys": [
                    {
                        "keyid": "finance",
                        "algorithm": "ed25519",
                        "public_key": public_pem(finance_key),
                    }
                ]
            }
        },
        "banks": {
            "vnpay": {
                "connector": "vnpay",
                "tmn_code": VNPAY_TMN,
                "hash_secret": VNPAY_SECRET,
                "base_url": f"{base}/sim/vnpay",
            }
        },
    }
    world = World(
        settings=parse_settings(doc, tmp_path / "payhub.toml"),
        port=port,
        portal_key=portal_key,
        other_portal_secret=other_secret,
        finance_key=finance_key,
    )
    return doc, world


def make_world(tmp_path: Path, database_url: str, port: int) -> World:
    return settings_document(tmp_path, database_url, port)[1]


@dataclass
class Hub:
    """A running hub and signed clients for its principals."""

    world: World
    app: web.Application
    session: aiohttp.ClientSession

    @property
    def base_url(self) -> str:
        return self.world.base_url

    @property
    def portal(self) -> PortalClient:
        return PortalClient(self.session, self.base_url, keyid="demo", key=self.world.portal_key)

    @property
    def other_portal(self) -> PortalClient:
        return PortalClient(
            self.session, self.base_url, keyid="other", key=self.world.other_portal_secret
        )

    @property
    def finance(self) -> PortalClient:
        return PortalClient(
            self.session, self.base_url, keyid="finance", key=self.world.finance_key
        )

    async def sim_pay(self, reference: str, outcome: str = "success", **extra: Any) -> Any:
        async with self.session.post(
            f"{self.base_url}/sim/vnpay/_sim/pay",
            json={"reference": reference, "outcome": outcome, **extra},
        ) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def sim_faults(self, **faults: Any) -> None:
        async with self.session.put(
            f"{self.base_url}/sim/vnpay/_sim/faults", json=faults
        ) as response:
            assert response.status == 200, await response.text()


CONTRACT_EXAMPLE: dict[str, Any] = {  # CONTRACT §3, as printed there
    "dossier": {
        "code": "H29.17-261127-0001",
        "procedure_code": "1.004227",
        "agency_code": "H29.17",
        "agency_name": "UBND quận Ba Đình",
    },
    "payer": {"name": "Nguyễn Văn An", "id_number": "001090001234", "phone": "0912345678"},
    "items": [
        {
            "kind": "charge",
            "code": "LPTB",
            "description": "Lệ phí trước bạ xe máy",
            "amount": 2400000,
        },
        {"kind": "fee", "code": "PCD", "description": "Phí cấp đăng ký", "amount": 150000},
    ],
    "amount": 2550000,
    "currency": "VND",
    "bank": "vnpay",
    "return_url": "https://portal.example/dossiers/H29.17-261127-0001/paid",
    "expires_in": 900,
    "description": "optional, ≤ 255 chars",
}


def payment_body(code: str = "H29.17-261127-0001", **overrides: Any) -> dict[str, Any]:
    """The example request of CONTRACT §3 for dossier ``code``, with what a test changes."""
    body = copy.deepcopy(CONTRACT_EXAMPLE)
    del body["description"]
    body["dossier"]["code"] = code
    body.update(overrides)
    return body


@asynccontextmanager
async def running_hub(world: World) -> AsyncIterator[Hub]:
    """Run the hub of ``world`` (simulators mounted) on its port for the block."""
    app = create_app(world.settings, simulators=True, clock=world.clock)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", world.port).start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Hub(world=world, app=app, session=session)
    finally:
        await runner.cleanup()
