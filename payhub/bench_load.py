"""The bench's load generator: keep-alive HTTP/1.1 connections, prepared requests, timings.

Far lighter than a full HTTP client (no header objects, no cookie jar, no redirects), so
that on a small machine the generator takes as little as it can of the CPU the measured
server needs; ``payhub bench`` reports its ceiling against a server that answers a
constant. CPU use is read from ``/proc`` (Linux) for the generator and the server alike.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: a request out, its whole answer back.

    Far lighter than a full client (no header objects, no cookie jar), so that on a small
    machine the generator takes as little of the CPU the server needs as it can. Answers
    must carry ``Content-Length`` (aiohttp's do) unless it is a 204 or 304, which have no
    body; anything else is a wrong answer.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            answer = self._answer()
        except ValueError as exc:
            waiter.set_exception(exc)
            return
        if answer is not None:
            waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    def _answer(self) -> tuple[int, bytes] | None:
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if head[9:12] in (b"204", b"304"):  # no body, by definition (RFC 9110 §6.4.1)
            length = 0
        elif at < 0:
            raise ValueError("an answer without Content-Length")
        else:
            length = int(head[at + 17 :].split(b"\r\n", 1)[0])
        total = end + 4 + length
        if len(buffer) < total:
            return None
        status = int(head[9:12])
        body = bytes(buffer[end + 4 : total])
        del buffer[:total]
        return status, body

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


@dataclass
class Outcome:
    """What one scenario measured; ``answers`` are kept for checking after the clock stops."""

    requests: int
    seconds: float
    latencies: list[float]
    answers: list[tuple[int, bytes]]
    generator_cpu_seconds: float
    server_cpu_seconds: float | None
    failures: int = 0

    def summary(self) -> dict[str, Any]:
        latencies = sorted(self.latencies)

        def pct(p: float) -> float:
            if not latencies:
                return 0.0
            return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

        per_request = 1e6 / max(self.requests, 1)
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
            "latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99), "max": pct(1.0)},
            "generator_cpu_us_per_request": round(self.generator_cpu_seconds * per_request, 1),
            "server_cpu_us_per_request": None
            if self.server_cpu_seconds is None
            else round(self.server_cpu_seconds * per_request, 1),
        }


def _process_cpu(pids: Sequence[int]) -> float | None:
    """CPU seconds (user + system) used so far by these processes (Linux), else None."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def send_all(
    port: int, requests: Sequence[bytes], concurrency: int, server_pids: Sequence[int]
) -> Outcome:
    """Send every request with ``concurrency`` connections in flight, timing each one."""
    loop = asyncio.get_running_loop()
    connections = []
    for _ in range(min(concurrency, len(requests))):
        _, protocol = await loop.create_connection(HttpConnection, "127.0.0.1", port)
        connections.append(protocol)
    answers: list[tuple[int, bytes]] = [(0, b"")] * len(requests)
    latencies: list[float] = []
    failures = 0
    position = 0

    async def worker(connection: HttpConnection) -> None:
        nonlocal position, failures
        while position < len(requests):
            index = position
            position += 1
            started = time.perf_counter()
            try:
                answers[index] = await connection.exchange(requests[index])
            except (ConnectionError, ValueError):
                failures += 1
                return
            latencies.append(time.perf_counter() - started)

    cpu_before = time.process_time()
    server_before = _process_cpu(server_pids)
    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    elapsed = time.perf_counter() - started
    server_after = _process_cpu(server_pids)
    generator_cpu = time.process_time() - cpu_before
    for connection in connections:
        if connection.transport is not None:
            connection.transport.close()
    server_cpu = (
        None if server_before is None or server_after is None else server_after - server_before
    )
    return Outcome(
        requests=len(requests),
        seconds=elapsed,
        latencies=latencies,
        answers=answers,
        generator_cpu_seconds=generator_cpu,
        server_cpu_seconds=server_cpu,
        failures=failures,
    )


def http_request(
    method: str, target: str, port: int, headers: dict[str, str], body: bytes
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
