"""A portal written in JavaScript with the npm ``http-message-signatures`` library works.

Opt-in (``pytest -m interop``): it installs that package from the npm registry into a
temporary folder, which the everyday suite should not depend on.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.factories import Hub, payment_body

pytestmark = pytest.mark.interop
SCRIPT = Path(__file__).with_name("sign_request.js")


@pytest.fixture(name="node_modules", scope="session")
def _node_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("the interop tests need node and npm")
    folder = tmp_path_factory.mktemp("npm")
    (folder / "package.json").write_text('{"name": "payhub-interop", "private": true}')
    subprocess.run(
        ["npm", "install", "--silent", "http-message-signatures@1"],
        cwd=folder, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    shutil.copy(SCRIPT, folder / SCRIPT.name)
    return folder


async def node_request(folder: Path, key_pem: Path, method: str, url: str, *extra: str) -> Any:
    process = await asyncio.create_subprocess_exec(
        "node", str(folder / SCRIPT.name), str(key_pem), method, url, *extra,
        cwd=folder, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return json.loads(out)


async def test_a_javascript_portal_creates_and_lists(
    hub: Hub, node_modules: Path, tmp_path: Path
) -> None:
    pem = tmp_path / "demo.pem"
    pem.write_bytes(
        hub.world.portal_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    body = json.dumps(payment_body("NODE-1"), ensure_ascii=False)
    created = await node_request(
        node_modules, pem, "POST", f"{hub.base_url}/v1/payments", body, "node-1"
    )
    assert created["status"] == 201, created
    payment = json.loads(created["body"])
    listed = await node_request(
        node_modules, pem, "GET", f"{hub.base_url}/v1/payments?dossier=NODE-1"
    )
    assert listed["status"] == 200
    assert [p["id"] for p in json.loads(listed["body"])["data"]] == [payment["id"]]
    tampered = body.replace("2550000", "2550001", 1)
    refused = await node_request(
        node_modules, pem, "POST", f"{hub.base_url}/v1/payments", tampered, "node-2"
    )
    assert refused["status"] == 422  # signed correctly, but the amounts no longer add up
