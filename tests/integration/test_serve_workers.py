"""``payhub serve --workers N``: N hub processes on one port, stopped together."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from payhub.cli import main
from payhub.portal.client import sign_headers
from payhub.setup import public_pem
from payhub.workers import worker_command

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(name="upgraded")
def _upgraded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["init", str(tmp_path / "hub"), "--port", str(_free_port())]) == 0
    config = tmp_path / "hub" / "payhub.toml"
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    capsys.readouterr()
    return config


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _kill_all(parent: subprocess.Popen[bytes]) -> None:
    """After a failed test: the workers too (SIGKILL to the parent is not passed on)."""
    if parent.poll() is None:
        for pid in _children(parent.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait(timeout=5)


@contextlib.contextmanager
def two_workers(config: Path, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``serve --workers 2`` on a free port, once both workers serve; killed on the way out."""
    port = _free_port()
    err = log.open("w+")
    parent = subprocess.Popen(
        [sys.executable, "-m", "payhub.cli", "serve", "--config", str(config),
         "--port", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=err, cwd=REPO,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while log.read_text().count("Running on") < 2 or len(_children(parent.pid)) != 2:
            assert parent.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "two workers did not answer in 30 s"
            time.sleep(0.1)
        yield parent, port
    finally:
        _kill_all(parent)
        err.close()


def test_worker_command_shares_the_port() -> None:
    command = worker_command("/etc/payhub.toml", "0.0.0.0", 8080)
    assert command[1:] == [
        "-m", "payhub.cli", "serve", "--config", "/etc/payhub.toml", "--reuse-port",
        "--host", "0.0.0.0", "--port", "8080",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [(["--workers", "0"], "--workers"), (["--workers", "2", "--simulators"], "one worker")],
)
def test_bad_worker_options_are_one_line(
    upgraded: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code = main(["serve", "--config", str(upgraded), *argv])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("payhub: ") and err.count("\n") == 1 and fragment in err, err


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_two_workers_answer_on_one_port_and_stop_together(upgraded: Path, tmp_path: Path) -> None:
    with two_workers(upgraded, tmp_path / "serve.err") as (parent, port):
        workers = _children(parent.pid)
        for _ in range(20):
            assert _ready(port)
        parent.send_signal(signal.SIGINT)
        assert parent.wait(timeout=30) == 0
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert "Traceback" not in (tmp_path / "serve.err").read_text()


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_a_worker_that_dies_stops_the_others(upgraded: Path, tmp_path: Path) -> None:
    with two_workers(upgraded, tmp_path / "serve.err") as (parent, port):
        first = _children(parent.pid)[0]
        os.kill(first, signal.SIGKILL)
        assert parent.wait(timeout=30) != 0
        assert not _ready(port)


def _events_status(port: int, keyid: str, key: Ed25519PrivateKey) -> int:
    url = f"http://127.0.0.1:{port}/v1/events"
    headers = sign_headers("GET", url, keyid=keyid, key=key, created=datetime.now(UTC))
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as a:
            return int(a.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_sighup_reloads_every_worker_and_stops_none(upgraded: Path, tmp_path: Path) -> None:
    """A portal added while two workers run is served by both after one SIGHUP."""
    with two_workers(upgraded, tmp_path / "serve.err") as (parent, port):
        workers = _children(parent.pid)
        key = Ed25519PrivateKey.generate()
        public = tmp_path / "tinh-bn.pub.pem"
        public.write_text(public_pem(key))
        added = ["portal", "add", "tinh-bn", "--config", str(upgraded),
                 "--public-key", str(public), "--callback", "https://p.example/h"]  # fmt: skip
        assert main(added) == 0
        assert _events_status(port, "tinh-bn", key) == 401

        parent.send_signal(signal.SIGHUP)

        deadline = time.monotonic() + 10
        while _events_status(port, "tinh-bn", key) != 200:
            assert time.monotonic() < deadline, (tmp_path / "serve.err").read_text()
            time.sleep(0.1)
        # the kernel spreads connections over both workers: every answer is 200
        assert {_events_status(port, "tinh-bn", key) for _ in range(20)} == {200}
        assert parent.poll() is None and _children(parent.pid) == workers
        parent.send_signal(signal.SIGINT)
        assert parent.wait(timeout=30) == 0
    log = (tmp_path / "serve.err").read_text()
    assert "Traceback" not in log and log.count("config_reloaded") == 2, log
