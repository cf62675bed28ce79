"""The bank port: what the hub asks of every bank, and how connectors are found."""

from payhub.connectors.port import (
    BankAnswer,
    BankConnector,
    Confirmation,
    ConfirmationOutcome,
    ConfirmationStatus,
    ConnectorContext,
    InboundMessage,
    OrderRequest,
    PlacedOrder,
    PrivateFile,
    RefundRequest,
    RefundResult,
    StatementLine,
    gravest,
)

__all__ = [
    "BankAnswer",
    "BankConnector",
    "Confirmation",
    "ConfirmationOutcome",
    "ConfirmationStatus",
    "ConnectorContext",
    "InboundMessage",
    "OrderRequest",
    "PlacedOrder",
    "PrivateFile",
    "RefundRequest",
    "RefundResult",
    "StatementLine",
    "gravest",
]
