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

Finding the reference in a transfer memo (``find_transfer_reference``) is where a wrong
answer would cost money: it would mark another payment paid. Its rules and why they never
name the wrong payment are in its own docstring.
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
    "find_transfer_reference",
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


# Each position's character values times its weight 2^(11-i), mod 37: the check is one sum.
_WEIGHTED: Final = tuple(
    {
        char: value * pow(2, REFERENCE_LENGTH - 1 - i, _MODULUS) % _MODULUS
        for char, value in _VALUES.items()
    }
    for i in range(REFERENCE_LENGTH)
)


def is_valid_reference(text: str) -> bool:
    """Whether ``text`` is exactly a reference: 12 upper-case characters, check verifying
    (Σ vᵢ·2^(11-i) ≡ 1 mod 37, the same as ``_mod37_2`` of the body against the check)."""
    if not _REFERENCE.fullmatch(text):
        return False
    return sum(map(dict.__getitem__, _WEIGHTED, text)) % _MODULUS == 1


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


# ------------------------------------------------------------------ one reference, or none

_TOKEN = re.compile(r"[0-9A-Za-z]+")
# What may stand between two pieces of one reference: whitespace, dots, dashes. Anything else
# (``,;:/_#()``, a letter with a diacritic, …) is a hard boundary no reference crosses.
_SOFT_GAP = re.compile(r"[\s.\-]+")
# A token (a maximal run of ASCII letters and digits) that begins with PH in any case.
_REFERENCE_START = re.compile(r"(?<![0-9A-Za-z])[Pp][Hh][0-9A-Za-z]*")
_FRAGMENT_MIN_LENGTH: Final = 8
_FRAGMENT_CHARACTERS: Final = frozenset(REFERENCE_ALPHABET)
# How a reference is written in groups: equal groups, or ``PH`` then the rest.
_GROUPINGS: Final = frozenset(
    {(6, 6), (4, 4, 4), (3, 3, 3, 3), (2, 2, 2, 2, 2, 2), (2, 10), (2, 5, 5)}
)


def _fold(token: str) -> str:
    """Upper-case; read O as 0 and I, L as 1 only in a token that also holds a digit.

    A reference never contains I, L or O, so they appear only where a person or a scanner
    misread a 0 or a 1 in a mix of letters and digits. A token of letters alone is a word
    (``PHI``, ``HO``, ``SO``): folding it would let words spell a reference.
    """
    upper = token.upper()
    if upper.isalpha():  # a token is ASCII letters and digits: no digit in it
        return upper
    return upper.translate(_LOOK_ALIKES)


def _is_fragment(token: str) -> bool:
    """A token that looks like (part of) a reference: ``PH`` and 6 or more reference characters."""
    return (
        token.startswith(REFERENCE_PREFIX)
        and len(token) >= _FRAGMENT_MIN_LENGTH
        and _FRAGMENT_CHARACTERS.issuperset(token)
    )


def _candidate(text: str, token: str, end: int) -> str | None:
    """The reference written from ``token`` (folded, ending at ``end`` in ``text``) on, if
    the pieces have a reference's shape.

    The pieces are the tokens that follow in the same *chain* (only a soft gap before
    each), up to 12 characters, stopping before a token that begins with ``PH``.
    """
    pieces = [token]
    gaps: list[str] = []
    length = len(token)
    while length < REFERENCE_LENGTH:
        following = _TOKEN.search(text, end)
        if following is None:
            break
        gap = text[end : following.start()]
        if not _SOFT_GAP.fullmatch(gap):
            break  # a hard boundary ends the chain
        piece = _fold(following.group())
        if piece.startswith(REFERENCE_PREFIX):
            break
        pieces.append(piece)
        gaps.append(gap)
        length += len(piece)
        end = following.end()
    if length != REFERENCE_LENGTH:
        return None
    if len(pieces) > 1:
        grouped = len(set(gaps)) == 1 and tuple(map(len, pieces)) in _GROUPINGS
        wrapped = len(pieces) == 2 and "\n" in gaps[0]
        if not (grouped or wrapped):
            return None
    joined = "".join(pieces)
    return joined if is_valid_reference(joined) else None


def find_transfer_reference(noisy_text: str) -> str | None:
    """The one reference a transfer memo names, or ``None`` when it does not name exactly one.

    Banking apps rewrite what the payer typed: ``MBVCB.1234567.ph7k-3qx9-mz2f.CT tu
    0123456789 NGUYEN VAN A``. The memo is cut into *tokens* (runs of ASCII letters and
    digits); tokens separated only by whitespace, dots or dashes form a *chain*. A
    *candidate* is a run of consecutive tokens of one chain that

    1. starts at the beginning of a token that begins with ``PH`` (case folded);
    2. ends at the end of a token, exactly 12 characters long;
    3. has no later token beginning with ``PH`` (that would be a second reference start);
    4. is written the way a code is written: in one piece; in equal groups (6-6, 4-4-4,
       3-3-3-3, 2×6) or as ``PH`` then the rest (2-10, 2-5-5), with the same separator
       between all groups; or in two pieces across a line break (a statement's wrap; the
       camt reader joins repeated remittance lines with a line break);
    5. verifies as a reference (Crockford alphabet, MOD 37-2 check) after ``_fold``.

    The memo's answer is the candidate when there is exactly one distinct candidate *and*
    every reference-looking fragment of the memo (a token of 8 or more reference characters
    beginning with ``PH``) is the start of that candidate. Otherwise ``None``: the payment
    goes to a person, never to a guess.

    Why this never names the wrong payment, for a memo written about payment A:

    * **A damaged A never verifies as another reference.** MOD 37-2 detects every single
      substitution and every transposition (proved in the module docstring), so a typo in
      an otherwise complete A yields no candidate from A's characters.
    * **A complete A is a candidate** when the bank separates its prefix and suffix from it
      (every format we know does: ``MBVCB.1234567.A.CT tu …``, ``IBFT A``, ``A- Ma GD …``).
      If anything else in the memo also verifies, there are two candidates: ``None``, never
      a choice between them.
    * **A damaged A is not completed from its neighbours.** Joining pieces of A with a
      neighbouring word needs the pieces to line up in a code's shape (rule 4): a cut or a
      lost character breaks the equal groups, and a second ``PH`` start is refused
      (rule 3). A long fragment of A that is not the one candidate's start makes the memo
      ambiguous, so text around a broken A is never read as a reference in its place.
    * **Words do not spell references.** Hard punctuation splits chains; letters-only
      tokens are never folded, so ``nop phi ho so`` cannot become ``PH1H0S0…``; ``U`` is not
      in the alphabet; words seldom come in equal groups.

    What remains is chance, bounded: tokens that line up in a code's shape from a ``PH``
    token pass the check one time in 37. The one way this can touch a fragment of A is a
    memo cut *inside* A exactly at a group boundary and continued by a word of the same
    group size after the same separator (``PH7K 3QX9`` + `` ABCD``). Such a reference is A's
    beginning plus foreign characters: it names an existing payment only if that payment's
    random characters happen to agree (about N·2⁻²⁰ for N open payments even in the worst
    case of a 4-character completion), and the caller still looks it up and compares the
    amount before applying anything. ``tests/unit/test_reference_finder.py`` runs 100,000
    mangled memos and 100,000 noise texts (``-m slow``) without a false match.
    """
    found: str | None = None
    # Only a token beginning with PH can start a candidate or be a fragment: the text is
    # searched for those (in C) and read from each, never cut into chains as a whole.
    for match in _REFERENCE_START.finditer(noisy_text):
        token = _fold(match.group())
        candidate = _candidate(noisy_text, token, match.end())
        if candidate is None:
            if _is_fragment(token):
                return None  # a reference-looking fragment that starts no candidate
        elif found is None:
            found = candidate
        elif candidate != found:
            return None  # two references
    return found
