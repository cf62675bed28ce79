"""A newcomer's first minutes, for real: ``payhub init``, then ``payhub serve`` processes.

Each test starts the command a user types (``python -m payhub.cli`` of this interpreter)
on a setup written by ``init`` for another port, and pays through the simulator the way a
portal and its payer would: the addresses handed to banks and payers must be the ones the
server really listens on, or payments stay pending with no word.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from payhub.app import served_at
from payhub.cli import build_parser, main
from payhub.portal import PortalClient
from payhub.settings import load_settings
from payhub.setup import init_setup
from tests.factories import free_port, payment_body

REPO = Path(__file__).resolve().parents[2]
RUNNING = re.compile(r"^=+ Running on (http://\S+) =+$", re.MULTILINE)


def payhub(*argv: object, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "payhub.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def init(folder: Path, *argv: object) -> Path:
    """``payhub init FOLDER ARGV`` as its own process, as a user runs it."""
    done = payhub("init", folder, *argv)
    assert done.returncode == 0, done.stderr
    return folder / "payhub.toml"


@pytest.fixture(name="local")
def _local(tmp_path: Path) -> Path:
    """``payhub init`` (in this process: quicker) for a port nobody will listen on."""
    saved = structlog.get_config()
    try:
        assert main(["init", str(tmp_path / "local"), "--port", str(free_port())]) == 0
    finally:
        structlog.configure(**saved)
    return tmp_path / "local" / "payhub.toml"


@dataclass
class Served:
    """A running ``payhub serve``: the URL it announced and what it said before that."""

    url: str
    said: str


@contextmanager
def serving(config: Path, *argv: object, log: Path) -> Iterator[Served]:
    """``payhub serve --config CONFIG ARGV`` until the block ends (then SIGINT, exit 0)."""
    with log.open("w+") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "payhub.cli", "serve", "--config", str(config), *map(str, argv)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=REPO,
        )
        try:
            deadline = time.monotonic() + 30
            while not (found := RUNNING.search(log.read_text())):
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "serve did not start in 30 s"
                time.sleep(0.05)
            said = log.read_text()[: found.start()]
            yield Served(url=found.group(1), said=said)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=15) == 0, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=5)
    assert "Traceback" not in log.read_text()


def demo_key(config: Path) -> Ed25519PrivateKey:
    key = load_pem_private_key((config.parent / "keys" / "demo.pem").read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


async def pay_end_to_end(base: str, config: Path) -> dict[str, Any]:
    """Create with the portal SDK, pay at the simulator, read back: the payment object."""
    async with aiohttp.ClientSession() as http:
        portal = PortalClient(http, base, keyid="demo", key=demo_key(config))
        created = await portal.create_payment(payment_body(), str(uuid.uuid4()))
        assert created.status == 201, created.body
        payment = created.json()
        assert payment["payment_url"].startswith(f"{base}/sim/vnpay/")
        async with http.get(payment["payment_url"]) as page:
            assert page.status == 200  # the payer's browser reaches the pay page
        payer = {"reference": payment["payment_url"], "outcome": "success"}
        async with http.post(f"{base}/sim/vnpay/_sim/pay", json=payer) as paid:
            assert paid.status == 200, await paid.text()
            report = await paid.json()
        [confirmation] = report["confirmations"]
        assert [a.get("RspCode") for a in confirmation["answers"]] == ["00"]  # hub applied it
        read: dict[str, Any] = (await portal.get_payment(payment["id"])).json()
        return read


def test_init_then_serve_elsewhere_with_simulators_pays_end_to_end(tmp_path: Path) -> None:
    installed = Path(sys.executable).with_name("payhub")  # not on the PATH, as after Quick start
    done = subprocess.run(
        [installed, "init", tmp_path / "local", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    config = tmp_path / "local" / "payhub.toml"
    assert f"start it with: {installed} serve --config {config} --simulators" in done.stdout
    written = load_settings(config).public_url
    port = free_port()
    with serving(config, "--port", port, "--simulators", log=tmp_path / "serve.err") as served:
        assert served.url == f"http://127.0.0.1:{port}" != written
        assert f"simulator vnpay: {served.url}/sim/vnpay/" in served.said
        assert f"payers and simulators use {served.url}" in served.said
        assert written in served.said  # and says what the file said
        payment = asyncio.run(pay_end_to_end(served.url, config))
    assert payment["status"] == "succeeded"
    assert payment["paid_at"] is not None


def test_any_free_port_and_a_host_name_with_simulators(local: Path, tmp_path: Path) -> None:
    argv = ["--host", "localhost", "--port", "0", "--simulators"]
    with serving(local, *argv, log=tmp_path / "serve.err") as served:
        port = int(served.url.rsplit(":", 1)[1])
        assert port != 0 and port != load_settings(local).port
        assert f"payers and simulators use {served.url}" in served.said
        assert asyncio.run(pay_end_to_end(served.url, local))["status"] == "succeeded"


def test_serve_without_simulators_on_another_port_warns(local: Path, tmp_path: Path) -> None:
    written = load_settings(local).public_url
    port = free_port()
    with serving(local, "--port", port, log=tmp_path / "serve.err") as served:
        assert served.url == f"http://127.0.0.1:{port}"
        warnings = [line for line in served.said.splitlines() if line.startswith("warning: ")]
        banks = list(load_settings(local).banks)
        assert len(warnings) == len(banks) + 1, served.said
        for bank, warning in zip(banks, warnings, strict=False):
            assert f"banks.{bank}." in warning and f"{written}/sim/{bank}" in warning
            assert "--simulators" in warning
        assert f"hub.public_url is {written}" in warnings[-1] and served.url in warnings[-1]


def test_only_the_simulator_addresses_follow(tmp_path: Path) -> None:
    """A bank pointed at a real gateway stays there; only what pointed at /sim/ moves."""
    config = init_setup(tmp_path, port=8080)
    config.write_text(
        config.read_text() + '\n[banks.vnpay-real]\nconnector = "vnpay"\ntmn_code = "REAL0001"\n'
        'hash_secret = "a-real-secret-of-enough-length-000000"\n'
        'base_url = "https://sandbox.vnpayment.vn"\n'
    )
    settings = load_settings(config)
    moved = served_at(settings, "http://[::1]:9000/")
    assert moved.public_url == "http://[::1]:9000"
    vnpay, before = moved.banks["vnpay"].options, settings.banks["vnpay"].options
    assert vnpay["base_url"] == "http://[::1]:9000/sim/vnpay"
    assert {k: v for k, v in vnpay.items() if k != "base_url"} == {
        k: v for k, v in before.items() if k != "base_url"
    }
    assert moved.banks["vnpay-real"] == settings.banks["vnpay-real"]
    assert before["base_url"] == "http://127.0.0.1:8080/sim/vnpay"  # settings are not changed


# --- README.md: its commands and its portal example, exactly as written ----------------------


def readme_blocks(language: str, section: str = "") -> list[str]:
    """The fenced ``language`` blocks of README.md (after the heading ``section``)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    if section:
        start = text.index(f"\n## {section}\n")
        end = text.find("\n## ", start + 1)
        text = text[start : end if end > 0 else None]
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def test_the_readme_portal_example_pays_against_a_real_hub(local: Path, tmp_path: Path) -> None:
    [example] = readme_blocks("python", "Running a hub")
    assert "from payhub.portal import" in example and "/_sim/pay" in example
    (tmp_path / "pay.py").write_text(example, encoding="utf-8")
    with serving(local, "--simulators", log=tmp_path / "serve.err") as served:
        assert served.url == load_settings(local).public_url
        expected = "".join(
            f"simulator {bank}: {served.url}/sim/{bank}/\n" for bank in load_settings(local).banks
        )
        assert served.said == expected  # nothing to warn
        done = subprocess.run(
            [sys.executable, "pay.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 0, done.stderr
    created, final = done.stdout.splitlines()
    assert re.fullmatch(r"201 pay_[0-9a-z]{26} pending", created), created
    assert final == "succeeded"


SERVERS = ("serve", "simulate", "bench")
"""Commands that run until stopped (or long): checked against the parser, run by other tests."""


def test_the_readme_commands_work_as_written(tmp_path: Path) -> None:
    """Every command of "Running a hub", in order, in a folder laid out like a checkout."""
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    installed = Path(sys.executable).with_name("payhub")
    assert installed.exists(), "payhub is not installed next to this interpreter"
    (bin_dir / "activate").write_text(f'export PATH="{installed.parent}:$PATH"\n')
    lines = [
        line.strip()
        for block in readme_blocks("sh", "Running a hub")
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0] == ". .venv/bin/activate"
    script, servers = [], []
    for line in lines:
        words = shlex.split(line)
        if words[0] == "payhub" and words[1] in SERVERS:
            servers.append(words[1:])
        else:
            script.append(line)
    assert {argv[0] for argv in servers} == set(SERVERS)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit chain ok" in done.stdout
    settings = load_settings(tmp_path / "local" / "payhub.toml")
    assert set(settings.portals) == {"demo", "tinh-bn", "bo-tp"}
    assert settings.portals["bo-tp"].whsec is not None
    assert set(settings.finance_users) == {"finance", "ketoan1"}
    for argv in servers:  # the options exist and the files they name do
        config = getattr(build_parser().parse_args(argv), "config", None)
        assert config is None or (tmp_path / config).exists()
