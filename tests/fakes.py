"""Hand-written fakes of the hub's ports, for tests that need no real bank."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from payhub.connectors.port import (
    BankAnswer,
    BankConnector,
    Confirmation,
    ConfirmationOutcome,
    ConfirmationStatus,
    InboundMessage,
    OrderRequest,
    PlacedOrder,
    RefundRequest,
    RefundResult,
    StatementLine,
)
from payhub.errors import BankUnavailable, ConfirmationMalformed, ConfirmationSignatureInvalid


class FakeBank(BankConnector):
    """A bank that takes orders in memory and reads confirmations as signed JSON."""

    protocol = "fake"
    max_amount = 50_000_000

    def __init__(
        self, bank: str = "fake", options: Mapping[str, Any] | None = None, context: Any = None
    ) -> None:
        super().__init__(bank, options or {}, context)
        self.orders: list[OrderRequest] = []
        self.down = False

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        return []

    async def place_order(self, order: OrderRequest) -> PlacedOrder:
        if self.down:
            raise BankUnavailable(f"{self.bank} is down")
        self.orders.append(order)
        return PlacedOrder(payment_url=f"https://{self.bank}.example/pay/{order.bank_reference}")

    def parse_confirmation(self, message: InboundMessage) -> Confirmation:
        try:
            data = json.loads(message.body)
        except ValueError as exc:
            raise ConfirmationMalformed("not JSON") from exc
        if data.get("signature") != "good":
            raise ConfirmationSignatureInvalid("bad signature")
        return confirmation(data["reference"], data["amount"], data.get("status", "succeeded"))

    def answer_confirmation(self, outcome: ConfirmationOutcome) -> BankAnswer:
        return BankAnswer(200, outcome.value.encode(), "text/plain")

    async def query_status(
        self, bank_reference: str, amount: int, created_at: datetime
    ) -> Confirmation | None:
        return None

    async def refund(self, request: RefundRequest) -> RefundResult:
        return RefundResult(succeeded=True, bank_refund_id="r1")

    def parse_statement(self, data: bytes) -> list[StatementLine]:
        return []


def confirmation(
    reference: str, amount: int, status: str = "succeeded", code: str | None = None
) -> Confirmation:
    return Confirmation(
        bank_reference=reference,
        amount=amount,
        status=ConfirmationStatus(status),
        bank_transaction_id="T1",
        failure_code=code,
    )
