"""The npm ``vnpay`` library verifies the VNPay simulator's querydr answers (15 fields).

Opt-in (``pytest -m interop``): it installs ``vnpay`` from the npm registry into a
temporary folder, which the everyday suite should not depend on.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from banks.vnpay import wire
from banks.vnpay.simulator import create_simulator

pytestmark = pytest.mark.interop
SCRIPT = Path(__file__).with_name("vnpay_querydr.js")
TMN, SECRET = "PAYHUB01", "PAYHUBTESTSECRET0123456789ABCDEF"


@pytest.fixture(name="node_vnpay", scope="session")
def _node_vnpay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("the interop tests need node and npm")
    folder = tmp_path_factory.mktemp("npm-vnpay")
    (folder / "package.json").write_text('{"name": "payhub-interop-vnpay", "private": true}')
    subprocess.run(
        ["npm", "install", "--silent", "vnpay@2"],
        cwd=folder, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    shutil.copy(SCRIPT, folder / SCRIPT.name)
    return folder


async def node_querydr(folder: Path, root: str, reference: str, date: str) -> Any:
    process = await asyncio.create_subprocess_exec(
        "node", str(folder / SCRIPT.name), root, TMN, SECRET, reference, date,
        cwd=folder, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return json.loads(out)


async def test_npm_vnpay_verifies_the_simulators_querydr_answer(node_vnpay: Path) -> None:
    params = {
        "vnp_Version": "2.1.0",
        "vnp_Command": "pay",
        "vnp_TmnCode": TMN,
        "vnp_Amount": "2550000",
        "vnp_CurrCode": "VND",
        "vnp_TxnRef": "PHNODE1",
        "vnp_OrderInfo": "Thanh toan ho so",
        "vnp_OrderType": "other",
        "vnp_Locale": "vn",
        "vnp_ReturnUrl": "http://portal.example/r",
        "vnp_IpAddr": "127.0.0.1",
        "vnp_CreateDate": "20261128100000",
        "vnp_ExpireDate": "20261128101500",
    }
    app = create_simulator(
        {"tmn_code": TMN, "hash_secret": SECRET},
        notify_url="http://127.0.0.1:9/ipn",
        clock=None,
    )
    async with TestServer(app, port=0) as server:
        root = str(server.make_url("/"))
        url = wire.pay_url(root, params, SECRET)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                server.make_url("/_sim/pay"),
                json={"reference": url, "outcome": "success", "faults": {"ipn_retries": 0}},
            ) as response,
        ):
            assert response.status == 200, await response.text()

        answer = await node_querydr(node_vnpay, root, "PHNODE1", "20261128100000")

    assert answer["vnp_ResponseCode"] == "00"
    assert answer["vnp_TransactionStatus"] == "00"
    assert answer["isVerified"] is True
