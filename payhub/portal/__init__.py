"""The portal SDK: signed requests to PayHub (CONTRACT §1) and its webhooks received (§4)."""

from payhub.portal.client import (
    PortalClient,
    PortalResponse,
    encode_json,
    required_components,
    sign_headers,
)
from payhub.portal.receiver import WebhookReceiver, fetch_jwks
from payhub.portal.webhooks import (
    SeenWebhooks,
    Webhook,
    WebhookVerificationError,
    WebhookVerifier,
    keys_from_jwks,
)

__all__ = [
    "PortalClient",
    "PortalResponse",
    "SeenWebhooks",
    "Webhook",
    "WebhookReceiver",
    "WebhookVerificationError",
    "WebhookVerifier",
    "encode_json",
    "fetch_jwks",
    "keys_from_jwks",
    "required_components",
    "sign_headers",
]
