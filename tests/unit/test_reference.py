"""Bank references: shape, error detection (proved exhaustively) and recovery from memos."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from payhub.domain import reference as ref
from payhub.domain.reference import find_references, is_valid_reference, new_bank_reference

ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MODULUS = 37


def _weights() -> list[int]:
    """The MOD 37-2 weight of each of the 12 positions: 2^11 … 2^0 modulo 37."""
    return [pow(2, ref.REFERENCE_LENGTH - 1 - i, MODULUS) for i in range(ref.REFERENCE_LENGTH)]


def _weighted_sum(text: str) -> int:
    return sum(ALNUM.index(c) * w for c, w in zip(text, _weights(), strict=True)) % MODULUS


@st.composite
def references(draw: st.DrawFn) -> str:
    """A reference from hypothesis' own randomness (so it shrinks and replays)."""
    body = "PH" + "".join(
        draw(st.lists(st.sampled_from(ref.REFERENCE_ALPHABET), min_size=9, max_size=9))
    )
    for check in ref.REFERENCE_ALPHABET:
        if is_valid_reference(body + check):
            return body + check
    assume(False)  # the check would be I, L, O, U or '*': new_bank_reference draws again
    raise AssertionError


def test_shape() -> None:
    for _ in range(2000):
        reference = new_bank_reference()
        assert len(reference) == ref.REFERENCE_LENGTH == 12
        assert re.fullmatch(r"PH[0-9A-HJKMNP-TV-Z]{10}", reference)
        assert is_valid_reference(reference)
        assert _weighted_sum(reference) == 1


def test_references_are_random() -> None:
    assert len({new_bank_reference() for _ in range(5000)}) == 5000


def test_alphabet_is_crockford() -> None:
    assert ref.REFERENCE_ALPHABET == "".join(c for c in ALNUM if c not in "ILOU")
    assert set("PH") <= set(ref.REFERENCE_ALPHABET)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "PH",
        "ph7k3qx9mz2f",
        "XX0000000000",
        "PH000000000",
        "PH00000000000",
        "PH0000000000 ",
        "PH00000000O0",
        "PH000000000*",
    ],
)
def test_invalid_shapes(text: str) -> None:
    assert not is_valid_reference(text)


# ------------------------------------------------------------------ the proof, exhaustively


def test_weights_are_distinct_and_non_zero_modulo_a_prime() -> None:
    """What the detection argument rests on: 37 prime, twelve distinct non-zero weights."""
    assert all(MODULUS % d for d in range(2, MODULUS))
    weights = _weights()
    assert 0 not in weights
    assert len(set(weights)) == ref.REFERENCE_LENGTH


def test_every_substitution_changes_the_sum() -> None:
    """The sum is linear: a substitution at i changes it by (new − old)·wᵢ, whatever else."""
    for weight in _weights():
        for old in range(36):
            for new in range(36):
                if old != new:
                    assert (new - old) * weight % MODULUS != 0


def test_every_transposition_changes_the_sum() -> None:
    """Swapping a at i and b at j changes the sum by (a − b)(wⱼ − wᵢ): adjacent or not."""
    weights = _weights()
    for i in range(ref.REFERENCE_LENGTH):
        for j in range(i + 1, ref.REFERENCE_LENGTH):
            for a in range(36):
                for b in range(36):
                    if a != b:
                        assert (a - b) * (weights[j] - weights[i]) % MODULUS != 0


def test_mod_37_36_would_miss_a_transposition() -> None:
    """Why not the hybrid MOD 37,36: this pair verifies under it, and not under MOD 37-2."""

    def mod_37_36(text: str) -> bool:
        check = 18
        for char in text:
            check = (((check or 36) * 2) % 37 + ALNUM.index(char)) % 36
        return check == 1

    assert mod_37_36("PHVWCBCRQCEB") and mod_37_36("PHWVCBCRQCEB")
    assert not (is_valid_reference("PHVWCBCRQCEB") and is_valid_reference("PHWVCBCRQCEB"))


# ------------------------------------------------------------------ the same, by property


@settings(max_examples=300)
@given(references(), st.data())
def test_any_single_substitution_is_invalid(reference: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(reference) - 1))
    replacement = data.draw(st.characters(codec="utf-8").filter(lambda c: c != reference[position]))
    mangled = reference[:position] + replacement + reference[position + 1 :]
    assert not is_valid_reference(mangled)


@settings(max_examples=200)
@given(references())
def test_every_single_substitution_and_adjacent_transposition_is_invalid(reference: str) -> None:
    assert is_valid_reference(reference)
    for position in range(len(reference)):
        for char in ALNUM + "ILOU*-":
            if char != reference[position]:
                mangled = reference[:position] + char + reference[position + 1 :]
                assert not is_valid_reference(mangled), mangled
    for position in range(len(reference) - 1):
        a, b = reference[position], reference[position + 1]
        if a != b:
            swapped = reference[:position] + b + a + reference[position + 2 :]
            assert not is_valid_reference(swapped), swapped


# ------------------------------------------------------------------ finding in memos


def test_finds_in_a_typical_memo() -> None:
    reference = new_bank_reference()
    spaced = f"{reference[:4].lower()}-{reference[4:8]} {reference[8:].lower()}"
    memo = f"MBVCB.1234567.{spaced}.CT tu 0123456789 NGUYEN VAN AN"
    assert find_references(memo) == [reference]


def test_finds_several_in_order_once_each() -> None:
    first, second = new_bank_reference(), new_bank_reference()
    memo = f"{second} thanh toan {first}; nhac lai {second.lower()}"
    assert find_references(memo) == [second, first]


def test_reads_look_alikes_the_crockford_way() -> None:
    reference = next(r for r in iter(new_bank_reference, None) if "0" in r[2:] or "1" in r[2:])
    typed = "PH" + reference[2:].replace("0", "O").replace("1", "l")
    assert find_references(f"chuyen tien {typed}") == [reference]


def test_ignores_mangled_and_absent_references() -> None:
    reference = next(r for r in iter(new_bank_reference, None) if r[5] != r[6])
    swapped = reference[:5] + reference[6] + reference[5] + reference[7:]
    assert find_references(f"CK {swapped} ") == []
    assert find_references("") == []
    assert find_references("Chuyển tiền học phí PHAN VAN TRI 0912345678") == []


_NOISE = st.text(
    alphabet=st.sampled_from(list("ABCXYZ0123456789 .-_/:,;#abcđươngỄ\n\t*()")),
    max_size=40,
)
_SEPARATOR = st.sampled_from(["", "", "", " ", ".", "-", " - ", "  ", "\n"])


@settings(max_examples=300)
@given(references(), _NOISE, _NOISE, st.lists(_SEPARATOR, min_size=11, max_size=11), st.booleans())
def test_a_reference_in_noise_is_found(
    reference: str, before: str, after: str, separators: list[str], lower: bool
) -> None:
    written = "".join(c + s for c, s in zip(reference, [*separators, ""], strict=True))
    if lower:
        written = written.lower()
    found = find_references(before + written + after)
    assert reference in found
    assert all(is_valid_reference(candidate) for candidate in found)


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_arbitrary_text_never_breaks_the_scanner(text: str) -> None:
    assert all(is_valid_reference(candidate) for candidate in find_references(text))
