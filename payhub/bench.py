"""``payhub bench``: signed, durable creates per second, against a bare-aiohttp baseline.

The hub runs as ``--workers`` separate ``payhub serve`` processes sharing one port
(``SO_REUSEPORT``) and one database; the baseline is the same number of bare aiohttp
processes that read the body, parse the JSON and answer 201 — the floor any aiohttp
service pays. The load comes from this process: every request is signed *before*
the clock starts (each with its own nonce and Idempotency-Key), then sent with a fixed
number in flight. Each request's latency is measured from send to full answer.

A second part times the hub's own stages in this process, one core, no HTTP:
signature verification, body validation, and the durable write through the ledger.
That is where the time of a create goes.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from asyncio.subprocess import Process
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from payhub.api.openapi import EXAMPLE_PAYMENT_REQUEST
from payhub.portal.client import encode_json, sign_headers

BASELINE_SOURCE = """
import json, sys
from aiohttp import web

async def create(request):
    body = json.loads(await request.read())
    return web.json_response({"id": "pay_x", "amount": body["amount"]}, status=201)

app = web.Application()
app.router.add_post("/v1/payments", create)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), reuse_port=True, access_log=None,
            print=None)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _body(index: int) -> dict[str, Any]:
    """The contract's example request, one dossier per request."""
    body: dict[str, Any] = copy.deepcopy(EXAMPLE_PAYMENT_REQUEST)
    body["dossier"] = {**body["dossier"], "code": f"BENCH-{index:07d}"}
    return body


def _presign(base: str, key: Ed25519PrivateKey, count: int) -> list[tuple[bytes, dict[str, str]]]:
    url = f"{base}/v1/payments"
    now = datetime.now(UTC)
    prepared = []
    for i in range(count):
        body = encode_json(_body(i))
        headers = sign_headers(
            "POST",
            url,
            keyid="demo",
            key=key,
            created=now,
            body=body,
            content_type="application/json",
            idempotency_key=str(uuid.uuid4()),
        )
        prepared.append((body, headers))
    return prepared


async def _load(
    base: str, prepared: list[tuple[bytes, dict[str, str]]], concurrency: int
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(prepared)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for body, headers in queue:
                started = time.perf_counter()
                async with session.post(
                    f"{base}/v1/payments", data=body, headers=headers
                ) as response:
                    await response.read()
                latencies.append(time.perf_counter() - started)
                statuses[response.status] = statuses.get(response.status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "per_second": round(len(latencies) / elapsed, 1),
        "latency_ms": {"p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99), "max": pct(1.0)},
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


async def _wait_listening(base: str, path: str, processes: Sequence[Process]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            if any(p.returncode is not None for p in processes):
                raise RuntimeError("a benchmark server exited at start")
            try:
                async with session.get(base + path) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("benchmark server did not start")


async def _spawn(workers: int, *command: str) -> list[Process]:
    env = {**os.environ, "PAYHUB_LOG_LEVEL": "warning"}
    return [
        await asyncio.create_subprocess_exec(*command, env=env, stderr=asyncio.subprocess.DEVNULL)
        for _ in range(workers)
    ]


async def _stop(processes: Sequence[Process]) -> None:
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _run_hub(
    config: Path, port: int, workers: int, prepared: Any, concurrency: int
) -> dict[str, Any]:
    processes = await _spawn(
        workers, sys.executable, "-m", "payhub.cli", "serve", "--config", str(config),
        "--port", str(port), "--reuse-port",
    )  # fmt: skip
    try:
        await _wait_listening(f"http://127.0.0.1:{port}", "/readyz", processes)
        return await _load(f"http://127.0.0.1:{port}", prepared, concurrency)
    finally:
        await _stop(processes)


async def _run_baseline(
    folder: Path, workers: int, prepared: Any, concurrency: int
) -> dict[str, Any]:
    script = folder / "baseline.py"
    script.write_text(BASELINE_SOURCE)
    port = _free_port()
    processes = await _spawn(workers, sys.executable, str(script), str(port))
    try:
        await _wait_listening(f"http://127.0.0.1:{port}", "/", processes)
        return await _load(f"http://127.0.0.1:{port}", prepared, concurrency)
    finally:
        await _stop(processes)


async def _stages(config: Path, samples: int) -> dict[str, Any]:
    """Microseconds per create spent in each stage of the hub, on one core, without HTTP."""
    from payhub.api.auth import MemoryNonceStore, SignedRequest, authenticate
    from payhub.app import check_banks, credentials_from
    from payhub.connectors.port import ConnectorContext
    from payhub.domain.clock import system_clock
    from payhub.domain.requests import parse_payment_request
    from payhub.service.payments import PaymentService
    from payhub.service.routing import Router
    from payhub.settings import load_settings
    from payhub.store.engine import create_engine
    from payhub.store.ledger import Ledger

    settings = load_settings(config)
    key = serialization.load_pem_private_key(
        (config.parent / "keys" / "demo.pem").read_bytes(), None
    )
    assert isinstance(key, Ed25519PrivateKey)
    credentials = credentials_from(settings)
    nonces = MemoryNonceStore()
    base = "http://127.0.0.1"
    signed = [
        SignedRequest(method="POST", url=f"{base}/v1/payments", headers=headers, body=body)
        for body, headers in _presign(base, key, samples)
    ]
    started = time.perf_counter()
    now = datetime.now(UTC)
    for request in signed:
        await authenticate(request, credentials, nonces, now)
    auth_us = (time.perf_counter() - started) / samples * 1e6

    started = time.perf_counter()
    parsed = [parse_payment_request(json.loads(r.body), known_banks={"vnpay"}) for r in signed]
    parse_us = (time.perf_counter() - started) / samples * 1e6

    engine = create_engine(settings.database_url)
    ledger = Ledger(engine, system_clock)
    await ledger.start()
    classes = check_banks(settings)
    async with aiohttp.ClientSession() as http:
        connectors = {
            name: cls(
                name,
                settings.banks[name].options,
                ConnectorContext(http=http, clock=system_clock, notify_url="http://127.0.0.1/n"),
            )
            for name, cls in classes.items()
        }
        service = PaymentService(
            engine=engine,
            ledger=ledger,
            connectors=connectors,
            router=Router(connectors, settings.default_bank, system_clock, settings.routing),
            clock=system_clock,
        )
        semaphore = asyncio.Semaphore(64)

        async def create(i: int) -> None:
            async with semaphore:
                await service.create("demo", f"stage-{i}", parsed[i])

        started = time.perf_counter()
        await asyncio.gather(*(create(i) for i in range(samples)))
        store_us = (time.perf_counter() - started) / samples * 1e6
    batches, units = ledger.batches, ledger.units
    await ledger.close()
    await engine.dispose()
    return {
        "signature_verification_us": round(auth_us, 1),
        "validation_us": round(parse_us, 1),
        "place_order_and_durable_write_us": round(store_us, 1),
        "ledger_units_per_commit": round(units / max(batches, 1), 1),
    }


async def run_bench(
    *, requests: int, concurrency: int, workers: int, database_url: str | None, as_json: bool
) -> int:
    from payhub.settings import load_settings
    from payhub.setup import init_setup
    from payhub.store import migrate
    from payhub.store.engine import create_engine

    with tempfile.TemporaryDirectory(prefix="payhub-bench-") as name:
        folder = Path(name)
        port = _free_port()
        config = init_setup(folder, port=port)
        if database_url:
            text = config.read_text().replace('"sqlite:///payhub.db"', json.dumps(database_url))
            config.write_text(text)
        settings = load_settings(config)
        engine = create_engine(settings.database_url)
        if database_url:
            from sqlalchemy import text as sql

            async with engine.begin() as conn:  # a clean slate on a shared server
                await conn.execute(
                    sql(
                        "DROP TABLE IF EXISTS alembic_version, payments, idempotency_keys, "
                        "events, audit_log, audit_head, nonces, refunds CASCADE"
                    )
                )
        await migrate.upgrade(engine)
        await engine.dispose()
        key = serialization.load_pem_private_key((folder / "keys" / "demo.pem").read_bytes(), None)
        assert isinstance(key, Ed25519PrivateKey)
        log = sys.stderr if sys.stderr.isatty() else None
        if log:
            print(
                f"bench: {requests} signed creates, {concurrency} in flight, {workers} worker(s)",
                file=log,
            )
        base = f"http://127.0.0.1:{port}"
        baseline = await _run_baseline(folder, workers, _presign(base, key, requests), concurrency)
        if log:
            print(f"  baseline: {baseline['per_second']}/s", file=log)
        hub = await _run_hub(config, port, workers, _presign(base, key, requests), concurrency)
        if log:
            print(f"  hub:      {hub['per_second']}/s", file=log)
        stages = await _stages(config, min(requests, 2000))
    result = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "database": "postgresql" if database_url else "sqlite",
        "workers": workers,
        "concurrency": concurrency,
        "hub": hub,
        "baseline": baseline,
        "hub_vs_baseline": round(hub["per_second"] / baseline["per_second"], 3),
        "stages_one_core": stages,
    }
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"PayHub bench: {requests} signed durable creates, {concurrency} in flight, "
            f"{workers} hub worker(s), {result['database']}, {os.cpu_count()} CPUs"
        )
        for name in ("hub", "baseline"):
            row = result[name]
            lat = row["latency_ms"]
            print(
                f"  {name:<9} {row['per_second']:>8}/s  p50 {lat['p50']} ms  p95 {lat['p95']} ms  "
                f"p99 {lat['p99']} ms  statuses {row['statuses']}"
            )
        print(f"  hub / bare aiohttp: {result['hub_vs_baseline']:.0%}")
        print("  where a create's time goes (one core, no HTTP), µs:")
        for stage, value in stages.items():
            print(f"    {stage:<36} {value}")
    ok = set(hub["statuses"]) == {"201"}
    return 0 if ok else 1
