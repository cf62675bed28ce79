"""The portal SDK: signed requests to PayHub for portals and finance tools (CONTRACT §1)."""

from payhub.portal.client import (
    PortalClient,
    PortalResponse,
    encode_json,
    required_components,
    sign_headers,
)

__all__ = ["PortalClient", "PortalResponse", "encode_json", "required_components", "sign_headers"]
