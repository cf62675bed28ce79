"""``payhub serve --workers N``: N hub processes sharing one port, under one parent.

One Python process runs one core. With ``--workers N`` the parent starts N ordinary
``payhub serve --reuse-port`` processes on the same address (the kernel spreads the
connections, ``SO_REUSEPORT``), passes SIGINT and SIGTERM on to them, and exits when they
have all stopped (SIGHUP is passed on too: each worker reloads its principals and keys);
if one stops on its own, the others are stopped too, and its exit status is the parent's.
Every worker is a whole hub: its own connection pool, ledger and nonce cache on the shared
database. That suits PostgreSQL; on SQLite the workers queue on the
one write lock, so a second worker adds little there (``payhub bench --workers``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

POLL_SECONDS = 0.2
STOP_SECONDS = 20.0


def worker_command(config: str, host: str | None, port: int | None) -> list[str]:
    """The ``serve`` command line of one worker: one process, the port shared."""
    command = [sys.executable, "-m", "payhub.cli", "serve", "--config", config, "--reuse-port"]
    if host is not None:
        command += ["--host", host]
    if port is not None:
        command += ["--port", str(port)]
    return command


def run_workers(command: Sequence[str], count: int) -> int:
    """Run ``count`` copies of ``command`` until a signal or until one of them stops."""
    workers = [subprocess.Popen(list(command)) for _ in range(count)]  # noqa: S603
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    def pass_on(signum: int, _frame: FrameType | None) -> None:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, pass_on)  # reload, not stop
    try:
        status = 0
        while all(worker.poll() is None for worker in workers):
            time.sleep(POLL_SECONDS)
        ended = next(worker for worker in workers if worker.poll() is not None)
        status = 0 if stopping else ended.returncode or 1
        if not stopping:
            print(
                f"payhub: worker {ended.pid} stopped (exit {ended.returncode}); stopping the rest",
                file=sys.stderr,
            )
            forward(signal.SIGINT, None)
        _wait_all(workers)
        return status
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_all(workers: Sequence[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + STOP_SECONDS
    for worker in workers:
        try:
            worker.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
