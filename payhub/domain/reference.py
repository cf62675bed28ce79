"""Bank references: the short code a payer may have to type into a bank transfer.

A reference is ``PH`` + 9 random characters + 1 check character, 12 characters of
``[0-9A-Z]``, so it passes unchanged through VNPay's ``vnp_TxnRef``, MoMo's ``orderId`` and
the memo of a VietQR transfer (which banks upper-case, truncate and pad with their own
prefixes). All 12 characters come from Crockford's base32 alphabet (digits and upper-case
letters without I, L, O, U): there is nothing to confuse when the reference is read aloud
or copied by hand, and a scanner may read a stray ``O`` as ``0`` and ``I``/``L`` as ``1``.

Check character: ISO 7064 MOD 37-2, over the values ``0-9`` → 0–9, ``A-Z`` → 10–35. The
reference is valid when Σ vᵢ·2^(11-i) ≡ 1 (mod 37), i = 0 … 11 (the check character has
weight 1). Why this and not MOD 37,36:

* 37 is prime and 2 is a primitive root modulo 37, so the twelve weights 2¹¹ … 2⁰ are
  distinct and non-zero mod 37. Changing one character changes the sum by
  (v' − v)·wᵢ, with 0 < |v' − v| < 37: never 0 mod 37, so **every single substitution
  is detected**. Swapping the characters at positions i and j changes it by
  (vᵢ − vⱼ)·(wⱼ − wᵢ): never 0 mod 37 for vᵢ ≠ vⱼ, so **every transposition is
  detected**, adjacent or not. ``tests/unit/test_reference.py`` checks both exhaustively.
* The hybrid MOD 37,36 always yields an alphanumeric check, but misses some adjacent
  transpositions (``PHVWCBCRQCEB`` and ``PHWVCBCRQCEB`` both verify under it).
* MOD 37-2's check can be the value 36 (``*`` in the standard), and can be I, L, O or U.
  Those would not survive a bank memo or a read-aloud, so ``new_bank_reference`` simply
  draws again (5 in 37 draws), keeping all 12 characters in the Crockford alphabet.
  Validation is plain MOD 37-2 over ``0-9A-Z``, so the detection argument is unchanged.

45 random bits (32⁹) per reference make collisions rare; the store still enforces
uniqueness.
"""

from __future__ import annotations

import re
from typing import Final

from payhub.domain.ids import random_bits

__all__ = [
    "REFERENCE_ALPHABET",
    "REFERENCE_LENGTH",
    "REFERENCE_PATTERN",
    "REFERENCE_PREFIX",
    "find_references",
    "is_valid_reference",
    "new_bank_reference",
]

REFERENCE_PREFIX: Final = "PH"
REFERENCE_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
REFERENCE_LENGTH: Final = 12
REFERENCE_PATTERN: Final = rf"^{REFERENCE_PREFIX}[{REFERENCE_ALPHABET}]{{10}}$"
_RANDOM_LENGTH: Final = 9

_VALUES: Final = {char: value for value, char in enumerate("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")}
_DIGITS: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MODULUS: Final = 37
_REFERENCE = re.compile(REFERENCE_PATTERN)
# Separators a bank or a payer may put inside a reference; any other character ends it.
_SEPARATORS = re.compile(r"[\s.\-_/]+")
_CANDIDATE = re.compile(rf"(?=({REFERENCE_PREFIX}[0-9A-Z]{{{REFERENCE_LENGTH - 2}}}))")
# Crockford's decoding of the look-alikes it leaves out.
_LOOK_ALIKES: Final = str.maketrans({"O": "0", "I": "1", "L": "1"})


def _mod37_2(text: str) -> int:
    """ISO 7064 MOD 37-2 running value of ``text`` (every character in ``_VALUES``)."""
    total = 0
    for char in text:
        total = ((total + _VALUES[char]) * 2) % _MODULUS
    return total


def _check_value(body: str) -> int:
    """The check value (0–36) that makes ``body`` + check verify."""
    return (1 - _mod37_2(body)) % _MODULUS


def new_bank_reference() -> str:
    """A fresh random reference, e.g. ``PH7K3QX9MZ2F``."""
    while True:
        bits = random_bits(5 * _RANDOM_LENGTH)
        body = REFERENCE_PREFIX + "".join(
            REFERENCE_ALPHABET[(bits >> (5 * i)) & 31] for i in range(_RANDOM_LENGTH)
        )
        check = _check_value(body)
        if check < 36 and _DIGITS[check] in REFERENCE_ALPHABET:
            return body + _DIGITS[check]


def is_valid_reference(text: str) -> bool:
    """Whether ``text`` is exactly a reference: 12 upper-case characters, check verifying."""
    if not _REFERENCE.fullmatch(text):
        return False
    return _mod37_2(text[:-1]) == (1 - _VALUES[text[-1]]) % _MODULUS


def find_references(noisy_text: str) -> list[str]:
    """Every reference hidden in a transfer memo, in order of first appearance.

    Banks rewrite memos: ``MBVCB.1234567.ph7k3-qx9m z2f.CT tu 0123456789``. The text is
    upper-cased, separators (whitespace, ``.``, ``-``, ``_``, ``/``) are dropped, then
    every 12-character window starting with ``PH`` is a candidate, with ``O`` read as
    ``0`` and ``I``/``L`` as ``1`` after the prefix; only candidates whose check character
    verifies are returned. Dropping separators can join neighbouring words into a
    candidate: the check lets about 1 in 37 random windows through, so a caller must still
    match the result against its own references.
    """
    compact = _SEPARATORS.sub("", noisy_text.upper())
    found: list[str] = []
    for match in _CANDIDATE.finditer(compact):
        candidate = match.group(1)
        candidate = REFERENCE_PREFIX + candidate[2:].translate(_LOOK_ALIKES)
        if candidate not in found and is_valid_reference(candidate):
            found.append(candidate)
    return found
