"""The served OpenAPI document describes exactly the routes the hub answers."""

from __future__ import annotations

import re

from tests.factories import Hub

METHODS = {"get", "post", "put", "patch", "delete"}


async def test_document_and_router_agree(hub: Hub) -> None:
    async with hub.session.get(hub.base_url + "/v1/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in METHODS
    }
    served = {
        (route.method, route.resource.canonical)
        for route in hub.app.router.routes()
        if route.resource is not None
        and route.method in {m.upper() for m in METHODS}
        and not route.resource.canonical.startswith(("/sim/", "/banks/"))
    }
    assert documented == served
    assert document["openapi"].startswith("3.1")
    bank_enum = document["components"]["schemas"]["PaymentRequest"]["properties"]["bank"]
    assert "vnpay" in str(bank_enum)


async def test_documented_paths_answer_with_their_documented_statuses(hub: Hub) -> None:
    """Every documented GET with no path parameter answers one of its documented statuses."""
    async with hub.session.get(hub.base_url + "/v1/openapi.json") as response:
        document = await response.json()
    for path, operations in document["paths"].items():
        if "get" not in operations or re.search(r"{\w+}", path):
            continue
        documented = set(operations["get"]["responses"])
        if path.startswith("/v1/") and path != "/v1/openapi.json":
            answer = await hub.portal.request(
                "GET", path, params={"dossier": "D-1"} if path == "/v1/payments" else None
            )
            status = answer.status
        else:
            async with hub.session.get(hub.base_url + path) as plain:
                status = plain.status
        assert str(status) in documented, (path, status, documented)
