"""No 500 for anything a client can send: generated bodies, paths, queries and headers."""

from __future__ import annotations

import string
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payhub.portal.client import encode_json
from tests.factories import Hub, payment_body

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def mutate(base: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """``base`` with the field at ``path`` replaced by ``value`` (or added)."""
    target: Any = base
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = value
    return base


SIGNATURE_HEADERS = [
    "Signature", "Signature-Input", "Content-Digest", "Idempotency-Key", "Content-Type",
]  # fmt: skip
FIELDS = [
    ["amount"], ["currency"], ["bank"], ["return_url"], ["expires_in"], ["description"],
    ["items"], ["dossier"], ["dossier", "code"], ["dossier", "agency_code"], ["payer"],
    ["payer", "name"], ["payer", "id_number"], ["payer", "phone"], ["extra"],
]  # fmt: skip


@FUZZ
@given(body=json_values)
async def test_any_json_body_gets_a_problem_not_a_500(hub: Hub, body: Any) -> None:
    answer = await hub.portal.request("POST", "/v1/payments", json=body, idempotency_key="f")
    assert answer.status in (201, 400, 409, 415, 422), answer.body
    if answer.status >= 400:
        assert answer.headers["Content-Type"].startswith("application/problem+json")


@FUZZ
@given(field=st.sampled_from(FIELDS), value=json_values)
async def test_a_changed_field_gets_a_problem_not_a_500(
    hub: Hub, field: list[str], value: Any
) -> None:
    body = mutate(payment_body(), field, value)
    key = str(uuid.uuid4())  # a fresh key: replays and conflicts are tested elsewhere
    answer = await hub.portal.request("POST", "/v1/payments", json=body, idempotency_key=key)
    assert answer.status in (201, 400, 422), answer.body


@FUZZ
@given(raw=st.binary(max_size=300))
async def test_any_bytes_as_body(hub: Hub, raw: bytes) -> None:
    answer = await hub.portal.request(
        "POST", "/v1/payments", data=raw or b" ", content_type="application/json",
        idempotency_key="b",
    )  # fmt: skip
    assert answer.status in (400, 409, 422), answer.body


segment = st.text(alphabet=string.ascii_letters + string.digits + "-._~%!$&'()*+,;=:@", max_size=20)


@FUZZ
@given(first=segment, second=segment, query=st.dictionaries(segment, segment, max_size=3))
async def test_any_signed_path_and_query(
    hub: Hub, first: str, second: str, query: dict[str, str]
) -> None:
    for method in ("GET", "POST"):
        answer = await hub.portal.request(method, f"/v1/{first}/{second}", params=query or None)
        assert answer.status < 500 or answer.status == 503, (method, first, second, answer.body)


@FUZZ
@given(
    query=st.dictionaries(
        st.sampled_from(
            [
                "vnp_TxnRef",
                "vnp_Amount",
                "vnp_SecureHash",
                "vnp_ResponseCode",
                "vnp_TransactionStatus",
                "vnp_PayDate",
                "x",
            ]
        ),
        st.text(max_size=30),
    )
)
async def test_any_ipn_query_gets_an_answer_the_bank_understands(
    hub: Hub, query: dict[str, str]
) -> None:
    async with hub.session.get(f"{hub.base_url}/banks/vnpay/notify", params=query) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer["RspCode"] in ("97", "99", "01", "04", "02")


@FUZZ
@given(
    headers=st.dictionaries(
        st.sampled_from(SIGNATURE_HEADERS),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
    )
)
async def test_garbage_signature_headers(hub: Hub, headers: dict[str, str]) -> None:
    body = encode_json(payment_body())
    async with hub.session.post(
        f"{hub.base_url}/v1/payments", data=body, headers=headers
    ) as response:
        assert response.status in (400, 401, 415), await response.text()
