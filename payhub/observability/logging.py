"""structlog set-up: JSON when not on a terminal, secrets dropped, personal data masked.

Every log line passes ``protect`` after its traceback is formatted and just before it is
rendered, so the rules below hold for fields, nested dicts and lists, messages and
tracebacks alike (``format_exc_info`` runs first, then ``protect``):

* **Secrets are replaced whole.** A value under a secret-looking key (``secret``,
  ``password``, ``private``, ``token``, ``signature``, ``whsec``, ``authorization``,
  ``api_key``, ``vnp_SecureHash``, ``cookie``, ``credential``, a bare ``key`` …) becomes
  ``[redacted]``, whatever its type. Inside free text, ``name=value`` / ``"name": "value"``
  pairs with such names, bearer tokens, ``whsec_…`` strings, PEM private keys, passwords
  in URLs and any value given to ``register_secret`` are redacted too.
* **Personal numbers keep their last three digits.** A value under a personal key
  (``id_number``, ``phone``, ``mobile``, ``cccd``, ``cmnd``, ``passport``, ``msisdn``) is
  masked whole. Anywhere else, in any string, a run of 9 to 12 digits (CMND 9, CCCD 12,
  phones 10–11, ``84…``) that is not part of a longer run, and a phone-shaped sequence
  (``0``, ``84`` or ``+84`` then nine digits, possibly split by single spaces, dots or
  hyphens) is masked: ``001090001234`` → ``*********234``.
* **Amounts, counts and times survive.** A value that is wholly a number (an ``int``,
  ``Decimal``, or a string of digits) under a numeric key (``amount``, ``paid_amount``,
  ``vnp_Amount``, ``total``, ``fee``, ``count``, ``duration_ms``, ``created_at``, ``port``,
  ``status`` …) is kept as it is: 100,000,000,000 VND has 12 digits and is not an ID.
  Free text under those keys is still scanned. Other integers of 9 to 12 digits are
  masked like strings (identity numbers are strings in PayHub, but a caller may slip).
  Longer digit runs (VNPay's 14-digit ``yyyyMMddHHmmss`` dates) are not ID numbers.
* **Identifiers survive.** Prefixed ULIDs (``pay_01kb…``, ``req_…``, ``evt_…``) and valid
  bank references (``PH1A2B3C4D5E``, checked by their MOD 37-2 character) are left
  whole even when they happen to contain nine digits in a row; ISO timestamps never
  hold a run of nine digits.

Other objects are turned into text (``str``) and then scanned, so a dataclass or an
exception cannot carry a secret or an ID number past ``protect`` through ``repr``.
Records of the standard library's ``logging`` (aiohttp, SQLAlchemy, Alembic) go through
the same processors.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys
import threading
from collections.abc import Mapping, MutableMapping
from decimal import Decimal
from functools import lru_cache
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

from payhub.domain.reference import is_valid_reference

__all__ = [
    "NUMERIC_KEYS",
    "PERSONAL_KEYS",
    "REDACTED",
    "SECRET_KEYS",
    "configure_logging",
    "log_processors",
    "mask_number",
    "mask_text",
    "protect",
    "register_secret",
    "renderer",
]

REDACTED = "[redacted]"

_SECRET_WORDS = (
    r"secret|passw|pwd|private|token|signature|whsec|authorization|api[_-]?key"
    r"|secure_?hash|cookie|credential|access[_-]?key"
)
SECRET_KEYS = re.compile(rf"{_SECRET_WORDS}|^(?:key|keys|pem|hmac_key|signing_key)$", re.I)
PERSONAL_KEYS = re.compile(r"id_?number|phone|mobile|cccd|cmnd|passport|msisdn", re.I)
# Numeric keys are matched word by word: ``vnp_Amount``, ``paidAmount``, ``duration_ms``
# are numeric, ``account`` or ``portal`` are not.
NUMERIC_KEYS = re.compile(
    r"(?:^|_)(?:amount|amounts|total|subtotal|sum|fee|fees|price|balance|count|units|size"
    r"|bytes|length|seq|duration|elapsed|latency|ms|seconds|secs|timestamp|ts|time|date"
    r"|created|expires|at|port|status|limit|offset|version|attempt|attempts|retries|batch)"
    r"(?:_|$)",
    re.I,
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

# Identifiers that may hold nine digits in a row and must stay readable: consumed first.
_ULID_ID = r"(?<![A-Za-z0-9_])[a-z]{2,12}_[0-9a-hjkmnp-tv-z]{26}(?![A-Za-z0-9_])"
_REFERENCE = r"(?<![A-Za-z0-9])PH[0-9A-Z]{10}(?![A-Za-z0-9])"
# Phone-shaped: 0 / 84 / +84 then nine digits, optionally split by single separators.
_PHONE = r"(?<!\d)(?:\+84[ .\-]?|84[ .\-]?|0)\d(?:[ .\-]?\d){8}(?!\d)"
# CMND (9), phones (10, 11 with 84), CCCD (12): any run of 9-12 digits, not part of more.
_DIGIT_RUN = r"(?<!\d)\d{9,12}(?!\d)"
_NUMBER = re.compile(rf"{_PHONE}|{_DIGIT_RUN}")
_PERSONAL_NUMBER = re.compile(
    rf"(?P<ulid>{_ULID_ID})|(?P<reference>{_REFERENCE})|{_NUMBER.pattern}"
)
_WHOLE_NUMBER = re.compile(r"^\s*[+-]?\d+(?:[.,]\d+)*\s*$")

_SECRET_IN_TEXT = (
    # PEM private keys, whole.
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)",
            re.S,
        ),
        REDACTED,
    ),
    # name=value, name: value, 'name': 'value', "name": "value" with a secret-looking name.
    (
        re.compile(
            rf"(?P<name>[\w-]*(?:{_SECRET_WORDS})[\w-]*)(?P<sep>['\"]?\s*[:=]\s*['\"]?)"
            r"(?P<value>(?!\[redacted\])(?:(?:bearer|basic)\s+)?[^\s&,;'\"})\]]+)",
            re.I,
        ),
        rf"\g<name>\g<sep>{REDACTED}",
    ),
    (
        re.compile(r"\b(?P<scheme>bearer|basic)\s+[A-Za-z0-9._~+/=-]+", re.I),
        rf"\g<scheme> {REDACTED}",
    ),
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]+"), REDACTED),
    # scheme://user:password@host
    (
        re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/?#\s@]*:)[^@/?#\s]+@", re.I),
        rf"\g<head>{REDACTED}@",
    ),
)

# Every rule above needs one of these somewhere in the text: nine digits (with single
# separators at most: every phone and ID-number shape has them), a secret-looking word, a
# scheme or an authorisation word, a PEM armour. Checking for them clears almost every
# log string at once, so the seven passes run only on text that could change. The words
# are looked for as plain substrings of the case-folded text (a superset of the rules'
# case-insensitive words: ``key`` stands for ``api_key`` and ``access-key``), four times
# faster than one alternation compiled with ``re.I``.
_NINE_DIGITS = re.compile(r"\d(?:[ .\-]?\d){8}")
_COULD_MASK_WORDS = (
    "secret", "passw", "pwd", "private", "token", "signature", "whsec", "authorization",
    "key", "hash", "cookie", "credential", "bearer", "basic", "-----begin", "://",
)  # fmt: skip


def _could_mask(text: str) -> bool:
    """Whether any masking rule could change ``text`` (never False when one would)."""
    if _NINE_DIGITS.search(text) is not None:
        return True
    folded = text.casefold()
    return any(word in folded for word in _COULD_MASK_WORDS) or any(
        secret in text for secret in _known_secrets
    )


_known_secrets: set[str] = set()
_MIN_REGISTERED_SECRET = 6
_MAX_DEPTH = 12


def register_secret(value: str | bytes | None) -> None:
    """Redact this exact value wherever it appears in a log line (configured secrets)."""
    if value is None:
        return
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if len(text) >= _MIN_REGISTERED_SECRET:
        _known_secrets.add(text)


def mask_number(text: str) -> str:
    """Mask every digit but the last three: enough to tell two payers apart, no more.

    Values with fewer than seven digits keep none. Other characters (``+``, spaces) stay.
    """
    digits = sum(ch.isdigit() for ch in text)
    if digits == 0:
        return "***"
    keep = 3 if digits >= 7 else 0
    seen = 0
    out = []
    for ch in text:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen > digits - keep else "*")
        else:
            out.append(ch)
    return "".join(out)


def _mask_match(match: re.Match[str]) -> str:
    if match.group("ulid") is not None:
        return match.group(0)
    reference = match.group("reference")
    if reference is not None:
        if is_valid_reference(reference):
            return reference
        return _NUMBER.sub(lambda m: mask_number(m.group(0)), reference)
    return mask_number(match.group(0))


def mask_text(text: str) -> str:
    """``text`` with its secrets redacted and its ID and phone numbers masked."""
    if not _could_mask(text):
        return text
    return _mask_text_fully(text)


def _mask_text_fully(text: str) -> str:
    """Every rule, pass by pass: the reference ``mask_text`` must always equal."""
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _SECRET_IN_TEXT:
        text = pattern.sub(replacement, text)
    return _PERSONAL_NUMBER.sub(_mask_match, text)


def _is_whole_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float | Decimal):
        return True
    return isinstance(value, str) and _WHOLE_NUMBER.match(value) is not None


_SECRET, _PERSONAL, _NUMERIC, _OTHER = range(4)


@lru_cache(maxsize=2048)
def _key_kind(key: str) -> int:
    """What a field name says about its value; log lines reuse a few dozen names."""
    if SECRET_KEYS.search(key):
        return _SECRET
    if PERSONAL_KEYS.search(key):
        return _PERSONAL
    if _is_numeric_key(key):
        return _NUMERIC
    return _OTHER


def _protect_value(key: str, value: Any, depth: int = 0, *, clean: bool = False) -> Any:
    """``value`` as it may be logged under ``key``; ``clean``: a string needs no masking."""
    kind = _key_kind(key)
    if kind == _SECRET:
        return REDACTED
    if value is None or isinstance(value, bool):
        return value
    if kind == _PERSONAL:
        return _protect_personal(value, depth)
    if kind == _NUMERIC and _is_whole_number(value):
        return value
    if depth > _MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, str):
        return value if clean else mask_text(value)
    if isinstance(value, int):
        text = str(value)
        masked = mask_text(text)
        return value if masked == text else masked
    if isinstance(value, float):
        return value
    if isinstance(value, bytes | bytearray):
        return mask_text(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {mask_text(str(k)): _protect_value(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_protect_value(key, v, depth + 1) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, BaseException):
        return mask_text(f"{type(value).__name__}: {value}")
    return mask_text(str(value))


def _is_numeric_key(key: str) -> bool:
    return NUMERIC_KEYS.search(_CAMEL.sub("_", key).replace("-", "_")) is not None


def _protect_personal(value: Any, depth: int) -> Any:
    """A personal key: every leaf under it is masked whole, whatever its shape."""
    if depth > _MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, Mapping):
        return {mask_text(str(k)): _protect_personal(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_protect_personal(v, depth + 1) for v in value]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, bytes | bytearray):
        return mask_number(bytes(value).decode("utf-8", "replace"))
    return mask_number(str(value))


def protect(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: no secret and no full ID or phone number ever reaches a log.

    A line's top-level strings are searched once, joined by line breaks (no rule's match
    can span one): when nothing in them could need masking, each is kept as it is rather
    than searched again on its own. A line of an HTTP request has half a dozen.
    """
    joined = "\n".join(v for v in event_dict.values() if type(v) is str)
    clean = not _could_mask(joined)
    for key in list(event_dict):
        value = event_dict[key]
        event_dict[key] = _protect_value(str(key), value, clean=clean and type(value) is str)
    return event_dict


def log_processors() -> list[Processor]:
    """Every processor before the renderer, in order (tests capture logs through these)."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Tracebacks become text here, so ``protect`` (after it) masks them too.
        structlog.processors.format_exc_info,
        protect,
    ]


def renderer(*, json: bool) -> Processor:
    """JSON lines for machines, ``key=value`` for a person at a terminal."""
    if json:
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(
        colors=False, exception_formatter=structlog.dev.plain_traceback
    )


class _LineWriter:
    """Writes rendered lines to ``stream``, or to ``sys.stderr`` as it is at each line.

    A log line never fails its caller: a closed or broken stream loses the line rather
    than turning a committed confirmation into a ``500``.
    """

    _lock = threading.Lock()

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        stream = sys.stderr if self._stream is None else self._stream
        try:
            with self._lock:
                stream.write(message + "\n")
                stream.flush()
        except (OSError, ValueError):
            pass

    log = debug = info = warn = warning = error = err = critical = fatal = exception = msg


class _ToStructlog(logging.Handler):
    """Sends standard-library log records through structlog's processors."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            logger = structlog.get_logger(record.name)
            logger.log(
                record.levelno,
                record.getMessage(),
                logger=record.name,
                exc_info=record.exc_info or False,
            )
        except Exception:
            self.handleError(record)


def configure_logging(
    *, json: bool | None = None, level: int = logging.INFO, stream: TextIO | None = None
) -> None:
    """Configure structlog once for the process: JSON unless ``stream`` is a terminal.

    ``stream`` is standard error (looked up at each line) unless given. Calling it again
    replaces the set-up, including the bridge from the standard library's ``logging``.
    """
    if json is None:
        json = not _isatty(sys.stderr if stream is None else stream)

    def line_writer(*_args: Any) -> _LineWriter:
        return _LineWriter(stream)

    structlog.configure(
        processors=[*log_processors(), renderer(json=json)],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=line_writer,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ToStructlog)]:
        root.removeHandler(handler)
    root.addHandler(_ToStructlog())
    root.setLevel(level)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
