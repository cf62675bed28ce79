"""Real answers, including every event type a flow produces, validate against the document.

Schemathesis cannot pay a payment, so the event page it sees is empty; this walks a flow
that makes ``payment.succeeded`` and ``dossier.overpaid`` events (whose ``data`` is a
dossier summary, not a payment) and checks each answer against the served document.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs

from tests.e2e.test_payment_flow import wait_for_status
from tests.factories import Hub, payment_body


def _validator(document: dict[str, Any], schema_name: str) -> Any:
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    return jsonschema_rs.validator_for(root)


async def test_an_overpaid_dossier_and_its_events_match_the_document(hub: Hub) -> None:
    async with hub.session.get(hub.base_url + "/v1/openapi.json") as response:
        document = await response.json()
    paid = []
    for key in ("first", "second"):  # the same items twice: the dossier is overpaid
        created = await hub.portal.create_payment(payment_body("D-OVER"), key)
        assert created.status == 201, created.body
        _validator(document, "Payment").validate(created.json())
        await hub.sim_pay(created.json()["payment_url"], "success")
        paid.append(await wait_for_status(hub, created.json()["id"], "succeeded"))

    dossier = await hub.portal.request("GET", "/v1/dossiers/D-OVER")
    assert dossier.json()["status"] == "overpaid"
    _validator(document, "DossierSummary").validate(dossier.json())
    listing = await hub.portal.list_payments("D-OVER")
    _validator(document, "PaymentList").validate(listing.json())

    page = (await hub.portal.list_events()).json()
    types = [event["type"] for event in page["data"]]
    assert types.count("payment.succeeded") == 2 and "dossier.overpaid" in types
    _validator(document, "EventPage").validate(page)
    overpaid = next(e for e in page["data"] if e["type"] == "dossier.overpaid")
    _validator(document, "DossierSummary").validate(overpaid["data"])
    # Not merely accepted by the anyOf as some other shape: it is the summary.
    assert not _validator(document, "Payment").is_valid(overpaid["data"])
