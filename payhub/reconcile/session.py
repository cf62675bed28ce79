"""How a person signs in to the finance page: a short-lived link from the command line.

Finance users sign API requests with a private key; nobody pastes a key into a browser.
``payhub finance login --config C --user U`` (run by someone who can read the hub's
configuration, and so its keys) prints a link that is valid once, for a few minutes. The
page exchanges it for a session cookie (``HttpOnly``, ``SameSite=Strict``, 8 hours) and
drops the token from the address bar. Both are signed with the hub's own Ed25519 key
(the first of ``hub.signing_keys``; any configured one verifies, so rotation does not sign
people out), over a context string so that they can never pass for a webhook signature.
A form on the page also carries a value derived from the session cookie, which another
site cannot read, against cross-site requests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature

from payhub.errors import ConfigError
from payhub.settings import Settings

CONTEXT = b"payhub finance page v1\n"
SESSION_LIFETIME = timedelta(hours=8)
COOKIE = "payhub_finance"
MAX_LOGIN_MINUTES = 60


class SessionInvalid(Exception):
    """A login link or a session cookie that does not verify, or has expired."""


@dataclass(frozen=True)
class Session:
    user: str
    nonce: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(settings: Settings, claims: dict[str, Any]) -> str:
    body = json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
    signature = settings.hub_keys[0].private_key.sign(CONTEXT + body)
    return f"{_b64(body)}.{_b64(signature)}"


def verify(settings: Settings, token: str, *, purpose: str, now: datetime) -> Session:
    """The session a token stands for; raises ``SessionInvalid``."""
    try:
        body_text, signature_text = token.split(".", 1)
        body, signature = _unb64(body_text), _unb64(signature_text)
    except (ValueError, TypeError):
        raise SessionInvalid("malformed") from None
    for key in settings.hub_keys:
        try:
            key.private_key.public_key().verify(signature, CONTEXT + body)
            break
        except InvalidSignature:
            continue
    else:
        raise SessionInvalid("signature")
    try:
        claims = json.loads(body)
        user, nonce, expires = str(claims["u"]), str(claims["n"]), int(claims["exp"])
        if claims["p"] != purpose:
            raise SessionInvalid("purpose")
    except (ValueError, KeyError, TypeError):
        raise SessionInvalid("claims") from None
    if expires < now.timestamp():
        raise SessionInvalid("expired")
    if user not in settings.finance_users:
        raise SessionInvalid("user")
    return Session(user=user, nonce=nonce, expires=expires)


def login_token(settings: Settings, user: str, *, minutes: int, now: datetime) -> str:
    if user not in settings.finance_users:
        known = ", ".join(settings.finance_users) or "none"
        raise ConfigError(f"{user!r} is not a finance user of this hub (known: {known})")
    if not 1 <= minutes <= MAX_LOGIN_MINUTES:
        raise ConfigError(f"--minutes must be 1–{MAX_LOGIN_MINUTES}")
    expires = int((now + timedelta(minutes=minutes)).timestamp())
    return sign(settings, {"p": "login", "u": user, "n": secrets.token_urlsafe(12), "exp": expires})


def login_url(
    settings: Settings, user: str, *, minutes: int, now: datetime, base_url: str | None = None
) -> str:
    """The link; ``base_url`` is the hub as the browser reaches it (default hub.public_url)."""
    token = login_token(settings, user, minutes=minutes, now=now)
    return f"{(base_url or settings.public_url).rstrip('/')}/finance/login?token={token}"


def session_token(settings: Settings, user: str, *, now: datetime) -> str:
    expires = int((now + SESSION_LIFETIME).timestamp())
    return sign(
        settings, {"p": "session", "u": user, "n": secrets.token_urlsafe(12), "exp": expires}
    )


def form_token(session_cookie: str) -> str:
    """The anti-forgery value forms carry: derived from the cookie another site cannot read."""
    return hashlib.sha256(b"form\n" + session_cookie.encode()).hexdigest()[:32]
