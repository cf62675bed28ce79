"""The served OpenAPI document against the running hub: schemathesis, every operation.

Every operation of ``/v1/openapi.json`` gets generated requests, valid and invalid,
signed with a portal's Ed25519 key (RFC 9421), and every answer goes through all of
schemathesis' checks: no 5xx, no status, header, content type or body outside the
document, no valid request refused, no invalid request accepted, a missing required
header refused, authentication enforced where the document declares it.

Signing happens on the prepared request, so the signature covers the exact bytes
sent. The schema's security scheme carries a placeholder; only a request that still
carries it is signed, so schemathesis' probes that strip or spoil the credentials go
out unsigned or badly signed, and must be refused.

Three rules the document states in words and JSON Schema cannot hold are applied to
generated *valid* requests, as a portal would: integers are JSON integers (JSON Schema
counts ``1.0`` as one), ``amount`` = sum of the items on create, and ``after`` names an
event of this portal (the hub has none here, so it is dropped).

Bounded for a 2-core machine: ``MAX_EXAMPLES`` per operation and generation mode.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case
from schemathesis.generation.modes import GenerationMode

from payhub.app import create_app
from payhub.domain.money import MAX_PAYMENT
from payhub.portal.client import sign_headers
from tests.factories import World, free_port, make_world

MAX_EXAMPLES = 25
PLACEHOLDER = "sign-this-request"


class _Rfc9421(requests.auth.AuthBase):
    """Signs a prepared request as the portal SDK would, if it carries the placeholder."""

    def __init__(self, world: World) -> None:
        self.world = world

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if request.headers.get("Signature") != PLACEHOLDER:
            return request
        del request.headers["Signature"]
        request.headers.pop("Signature-Input", None)
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        assert request.method is not None and request.url is not None
        signed = sign_headers(
            request.method,
            request.url,
            keyid="demo",
            key=self.world.portal_key,
            created=datetime.now(UTC),
            body=body,
            content_type=request.headers.get("Content-Type") if body else None,
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
        request.headers.update(signed)
        return request


@schemathesis.auth()
class _Placeholder:
    """The document's ``Signature`` / ``Signature-Input`` API-key headers, to be signed."""

    def get(self, case: Case, context: Any) -> str:
        return PLACEHOLDER

    def set(self, case: Case, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Signature": data, "Signature-Input": data}


@schemathesis.hook
def map_case(context: Any, case: Case) -> Case:
    """Apply the documented cross-field rules to valid requests (see the module docstring)."""
    meta = case.meta
    if meta is None or meta.generation.mode is not GenerationMode.POSITIVE:
        return case
    label = case.operation.label
    if isinstance(case.body, dict | list):
        case.body = _integers(case.body)
    if label == "POST /v1/payments" and isinstance(case.body, dict):
        items = case.body.get("items")
        if isinstance(items, list) and all(isinstance(i, dict) for i in items):
            amounts = [i.get("amount") for i in items]
            if all(type(amount) is int for amount in amounts):
                if sum(amounts) > MAX_PAYMENT:  # each within bounds, the total beyond
                    for item in items:
                        item["amount"] = 1
                case.body["amount"] = sum(item["amount"] for item in items)
    if label == "GET /v1/events" and case.query:
        case.query.pop("after", None)
    return case


def _integers(value: Any) -> Any:
    """JSON Schema counts ``1.0`` as an integer; the document says the hub does not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integers(item) for item in value]
    return value


def _serve(world: World, started: threading.Event, stop: list[asyncio.AbstractEventLoop]) -> None:
    loop = asyncio.new_event_loop()
    stop.append(loop)

    async def run() -> web.AppRunner:
        app = create_app(world.settings, simulators=True, clock=world.clock)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", world.port).start()
        return runner

    runner = loop.run_until_complete(run())
    started.set()
    loop.run_forever()
    loop.run_until_complete(runner.cleanup())
    loop.close()


@pytest.fixture(name="world", scope="module")
def _world(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A hub of its own in a thread, so schemathesis' blocking client can call it."""
    directory = tmp_path_factory.mktemp("schemathesis")
    database = directory / "payhub.db"
    shutil.copy(sqlite_template, database)
    world = make_world(directory, f"sqlite+aiosqlite:///{database}", free_port())
    started, loops = threading.Event(), []
    thread = threading.Thread(target=_serve, args=(world, started, loops), daemon=True)
    thread.start()
    assert started.wait(30), "the hub did not start"
    yield world
    loops[0].call_soon_threadsafe(loops[0].stop)
    thread.join(30)


@pytest.fixture(name="served_schema", scope="module")
def _served_schema(world: World) -> Any:
    return schemathesis.openapi.from_url(world.base_url + "/v1/openapi.json")


@pytest.fixture(name="signed_session", scope="module")
def _signed_session(world: World) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.auth = _Rfc9421(world)
        yield session


def test_the_hub_answers_as_its_document_says(
    served_schema: Any, signed_session: requests.Session
) -> None:
    failures: dict[str, str] = {}
    cases = 0
    for result in served_schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def exercise(case: Case) -> None:
                nonlocal cases
                cases += 1
                case.call_and_validate(session=signed_session)

            try:
                exercise()
            except Unsatisfiable:
                pass  # nothing to negate: the operation has no parameters and no body
            except (Exception, BaseExceptionGroup) as failure:  # reported per operation below
                failures[f"{operation.label} ({mode.value})"] = str(failure)[:6000]
    print(f"schemathesis: {cases} cases")  # shown with -s; the time is pytest's
    assert cases > 0
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
