"""structlog set-up: JSON when not on a terminal, secrets dropped, personal data masked.

Every log line passes ``protect``: values under secret-looking keys are replaced
whole, ID numbers and phone numbers keep only their last digits, wherever they appear
(as a field or inside a message).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SECRET_KEYS = re.compile(
    r"secret|password|passwd|private|token|signature|whsec|hash_secret|authorization|api_key",
    re.IGNORECASE,
)
PERSONAL_KEYS = re.compile(r"id_number|phone|cccd|cmnd", re.IGNORECASE)
# 9 or 12 digit ID numbers, Vietnamese phone numbers (0xxxxxxxxx, +84xxxxxxxxx).
_PERSONAL_NUMBER = re.compile(r"(?<!\d)(?:\+84|0)?\d{8,11}(?!\d)")


def mask_number(text: str) -> str:
    """Keep the last three digits: enough to tell two payers apart in a log, no more."""
    digits = sum(ch.isdigit() for ch in text)
    if digits <= 3:
        return "***"
    kept = text[-3:]
    return "*" * (len(text) - 3) + kept


def _mask_in_text(text: str) -> str:
    return _PERSONAL_NUMBER.sub(lambda m: mask_number(m.group(0)), text)


def _protect_value(key: str, value: Any) -> Any:
    if SECRET_KEYS.search(key):
        return "[redacted]"
    if PERSONAL_KEYS.search(key) and value is not None:
        return mask_number(str(value))
    if isinstance(value, str):
        return _mask_in_text(value)
    if isinstance(value, dict):
        return {str(k): _protect_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_protect_value(key, v) for v in value]
    return value


def protect(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: no secret and no full ID or phone number ever reaches a log."""
    for key in list(event_dict):
        event_dict[key] = _protect_value(key, event_dict[key])
    return event_dict


def configure_logging(*, json: bool | None = None, level: int = logging.INFO) -> None:
    """Configure structlog once for the process."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            protect,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
