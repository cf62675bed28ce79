"""The transfer-reference finder: one reference from a mangled memo, or none, never another.

The no-false-match property runs 3,000 memos by default and 100,000 with ``-m slow``.
"""

from __future__ import annotations

import itertools
import random
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from payhub.domain.reference import (
    REFERENCE_ALPHABET,
    find_transfer_reference,
    is_valid_reference,
    new_bank_reference,
)

# ------------------------------------------------------------------ examples


def _reference_with(predicate: object) -> str:
    assert callable(predicate)
    return next(r for r in iter(new_bank_reference, None) if predicate(r))


@pytest.mark.parametrize(
    "template",
    [
        "{r}",
        "{lower}",
        "MBVCB.1234567.{r}.CT tu 0123456789 NGUYEN VAN AN",
        "MBVCB.3422867178.074181.{lower}.CT tu 1012842851 PHAM VAN AN toi 8888",
        "IBFT {r}",
        "{r}- Ma GD ACSP/ 2P123456",
        "{r} FT23348200713505",
        "NHAN TU 0123456789 TRACE 123456 ND {g4}",
        "nop phi ho so {g4dash}",
        "Thanh toán lệ phí {g3}",
        "{r}\nCT tu 0123",
        "REF:{r};",
        "ND:{r}/CT",
        "({r})",
        "{r} nhac lai {lower}",
        "{wrapped}",
    ],
)
def test_finds_the_reference_in_real_memo_shapes(template: str) -> None:
    r = new_bank_reference()
    memo = template.format(
        r=r,
        lower=r.lower(),
        g4=f"{r[:4]} {r[4:8]} {r[8:]}",
        g4dash=f"{r[:4]}-{r[4:8]}-{r[8:]}".lower(),
        g3=".".join(r[i : i + 3] for i in range(0, 12, 3)),
        wrapped=f"Thanh toan ho so H29 {r[:7]}\n{r[7:]} xin cam on",
    )
    assert find_transfer_reference(memo) == r


def test_reads_look_alikes_in_a_token_with_digits() -> None:
    r = _reference_with(lambda r: set("01") & set(r) and set("23456789") & set(r))
    typed = "PH" + r[2:].replace("0", "O").replace("1", "l", 1).replace("1", "I")
    assert find_transfer_reference(f"chuyen tien {typed.lower()}") == r


def test_letters_only_words_do_not_spell_a_reference() -> None:
    """Without the digits rule, ``PHI HO SO`` would fold to ``PH1H0S0``: 1 in 37 would verify."""
    spelled = [
        f"phi ho so {n:05d}" for n in range(100_000) if is_valid_reference(f"PH1H0S0{n:05d}")
    ]
    assert len(spelled) > 1000  # the danger is real
    assert all(find_transfer_reference(memo) is None for memo in spelled[:500])


def test_two_different_references_give_none() -> None:
    first, second = new_bank_reference(), new_bank_reference()
    assert find_transfer_reference(f"{first} {second}") is None
    assert find_transfer_reference(f"{first}, lan 2: {second.lower()}") is None


def test_the_same_reference_twice_is_one() -> None:
    r = new_bank_reference()
    assert find_transfer_reference(f"{r} ({r.lower()})") == r


def test_a_truncated_reference_gives_none() -> None:
    r = new_bank_reference()
    for cut in range(len(r)):
        assert find_transfer_reference(f"MBVCB.1234567.{r[:cut]}") is None


def test_a_mistyped_reference_gives_none() -> None:
    r = new_bank_reference()
    for position in range(2, len(r)):
        for char in REFERENCE_ALPHABET:
            if char != r[position]:
                typo = r[:position] + char + r[position + 1 :]
                assert find_transfer_reference(f"CK {typo} thanh toan") is None


def test_a_broken_reference_blocks_another_candidate_in_the_memo() -> None:
    """A memo about A whose A is cut: a valid-looking code elsewhere is not taken instead."""
    for _ in range(100):
        a, other = new_bank_reference(), new_bank_reference()
        assert find_transfer_reference(f"{other} {a[:9]}") is None
        assert find_transfer_reference(f"{a[:10]}X9 ghi chu {other}") is None
        assert find_transfer_reference(f"{a}CT, {other}") is None


def test_a_reference_start_never_joins_an_earlier_ph_word() -> None:
    """``PHAN`` + a cut ``PH7K3QX9`` would be 12 characters: a second ``PH`` start forbids it."""
    for _ in range(200):
        a = new_bank_reference()
        joined = "PHAN" + a[:8]
        memo = f"PHAN {a[:8]}"
        assert find_transfer_reference(memo) is None, (memo, is_valid_reference(joined))


def test_hard_punctuation_splits_a_reference() -> None:
    r = new_bank_reference()
    for mark in ",;:/_#()|+*":
        assert find_transfer_reference(f"{r[:6]}{mark}{r[6:]}") is None


def test_glued_to_a_neighbour_is_not_read() -> None:
    r = new_bank_reference()
    assert find_transfer_reference(f"CK{r}") is None
    assert find_transfer_reference(f"{r}CT tu 0123") is None


def test_nothing_to_find() -> None:
    for memo in ["", "   ", "PH", "Chuyển tiền học phí PHAN VAN TRI 0912345678", "PH" * 40]:
        assert find_transfer_reference(memo) is None


def test_known_residual_a_memo_cut_at_a_group_boundary_then_continued() -> None:
    """The bounded residual the docstring states, shown rather than hidden.

    A memo written in groups of 4, cut after the second group and continued by a 4-letter
    word after the same separator, has a reference's shape; one continuation in 37
    verifies. The finder returns it: A's beginning plus foreign characters, which names no
    other payment unless that payment's random characters agree.
    """
    a = new_bank_reference()
    words = ("".join(w) for w in itertools.product("ABCDEFGHJKMN", repeat=4))
    continued = [w for w in words if is_valid_reference(a[:8] + w) and w != a[8:]]
    assert continued
    for word in continued[:50]:
        found = find_transfer_reference(f"{a[:4]} {a[4:8]} {word}")
        assert found == a[:8] + word != a
    # The same cut continued any other way is refused: no equal groups, or another gap.
    for memo in [f"{a[:10]}.{continued[0][:2]} tu", f"{a[:4]} {a[4:8]}-{continued[0]}"]:
        assert find_transfer_reference(memo) is None


def test_a_damaged_reference_is_not_completed_by_its_neighbour() -> None:
    """A lost character, then a suffix: the pieces no longer have a code's shape."""
    for _ in range(200):
        a = new_bank_reference()
        for position in range(2, 12):
            lost = a[:position] + a[position + 1 :]
            for tail in "0123456789ABCXYZ":
                assert find_transfer_reference(f"ND {lost} {tail}3 CT tu") in (None, a)
                assert find_transfer_reference(f"ND {lost} {tail}") is None


# ------------------------------------------------------------------ properties

_SEPARATORS = [" ", "-", ".", " - ", "  ", "\n", ". "]
_PREFIXES = [
    "",
    "MBVCB.1234567.",
    "MBVCB.3422867178.074181.",
    "IBFT ",
    "NHAN TU 0123456789 TRACE 654321 ND ",
    "Thanh toan ho so H29.17-261127-0001 ",
    "nop phi ",
    "Le phi truoc ba xe may ",
    "PHAM VAN AN chuyen tien ",
    "PHAN THI PHUONG ",
    "REF:",
    "ND: ",
    "TKThe :0123456789, tai VCB. ",
]
_SUFFIXES = [
    "",
    ".CT tu 0123456789 NGUYEN VAN A toi 0011004567890",
    " FT24332123456789",
    "- Ma GD ACSP/ 2P1234",
    " tra tien ho so",
    ". PHAM VAN AN",
    " PH 0123",
    "; GD 123456-112826 09:41:25",
]
_LOOK_ALIKES = {"0": "Oo", "1": "IiLl"}


_NOISE_CHARACTERS = "ABCHPXYZ0123456789 .-_/:,;#abcphđươngỄ\n\t*()"


def _reference(rnd: random.Random) -> str:
    """A random valid reference drawn from ``rnd`` (replayable, unlike ``new_bank_reference``)."""
    while True:
        body = "PH" + "".join(rnd.choice(REFERENCE_ALPHABET) for _ in range(9))
        for check in REFERENCE_ALPHABET:
            if is_valid_reference(body + check):
                return body + check


def _noise(rnd: random.Random) -> str:
    return "".join(rnd.choice(_NOISE_CHARACTERS) for _ in range(rnd.randint(0, 40)))


def _spelled(rnd: random.Random, reference: str) -> str:
    """``reference`` written the ways payers and apps write it (splits, case, look-alikes)."""
    style = rnd.choice(["plain", "plain", "groups", "one split", "anywhere"])
    if style == "plain":
        cuts: list[int] = []
    elif style == "groups":
        size = rnd.choice([2, 3, 4, 6])
        cuts = list(range(size, 12, size))
    elif style == "one split":
        cuts = [rnd.randint(1, 11)]
    else:
        cuts = sorted(rnd.sample(range(1, 12), rnd.randint(0, 6)))
    pieces = [reference[a:b] for a, b in zip([0, *cuts], [*cuts, 12], strict=True)]
    text = rnd.choice(_SEPARATORS).join(pieces)
    case = rnd.choice(["upper", "lower", "mixed"])
    if case == "lower":
        text = text.lower()
    elif case == "mixed":
        text = "".join(c.lower() if rnd.random() < 0.5 else c for c in text)
    if rnd.random() < 0.1:
        text = "".join(
            rnd.choice(_LOOK_ALIKES[c]) if c in _LOOK_ALIKES and rnd.random() < 0.5 else c
            for c in text
        )
    return text


def _damaged(rnd: random.Random, reference: str) -> str:
    """Sometimes one typo, a swap or a lost character: the finder must not read another."""
    kind = rnd.choice(["none"] * 7 + ["substitute", "swap", "delete"])
    position = rnd.randint(0, 10)
    if kind == "substitute":
        char = rnd.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        return reference[:position] + char + reference[position + 1 :]
    if kind == "swap":
        return (
            reference[:position]
            + reference[position + 1]
            + reference[position]
            + reference[position + 2 :]
        )
    if kind == "delete":
        return reference[:position] + reference[position + 1 :]
    return reference


@st.composite
def mangled_memos(draw: st.DrawFn) -> tuple[str, str]:
    """A memo about one payment, as it reaches the hub: (memo, the payment's reference).

    The reference is damaged (sometimes), spelled (split, case, look-alikes), wrapped in a
    bank's prefix and suffix with random noise, and sometimes cut at the end by the bank's
    field limit. Not generated: a memo cut *inside* the reference and then continued (the
    residual the finder's docstring bounds, shown in its own test above).
    """
    rnd = draw(st.randoms(use_true_random=False))
    reference = _reference(rnd)
    body = _spelled(rnd, _damaged(rnd, reference))
    prefix = rnd.choice(_PREFIXES) + rnd.choice(["", "", _noise(rnd) + " "])
    suffix = rnd.choice(_SUFFIXES) + rnd.choice(["", "", " " + _noise(rnd)])
    memo = prefix + body + suffix
    if rnd.random() < 0.2:  # the bank's field limit cuts the end of the memo
        memo = memo[: rnd.randint(len(prefix), len(memo))]
    return memo, reference


def _spelled_in(reference: str, text: str) -> bool:
    """An oracle independent of the finder's code: ``reference`` is written in ``text``.

    Written means: inside one stretch of letters, digits, whitespace, dots and dashes,
    after dropping those separators, upper-casing and reading O as 0, I and L as 1.
    """
    for stretch in re.split(r"[^0-9A-Za-z\s.\-]", text):
        compact = re.sub(r"[\s.\-]", "", stretch).upper()
        if reference in compact.translate(str.maketrans("OIL", "011")):
            return True
    return False


def _check_no_false_match(memo: str, reference: str) -> None:
    found = find_transfer_reference(memo)
    assert found in (None, reference), (memo, reference, found)


_FAST = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_SLOW = settings(
    max_examples=100_000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@_FAST
@given(mangled_memos())
def test_a_mangled_memo_never_yields_another_reference(case: tuple[str, str]) -> None:
    _check_no_false_match(*case)


@pytest.mark.slow
@_SLOW
@given(mangled_memos())
def test_a_mangled_memo_never_yields_another_reference_100k(case: tuple[str, str]) -> None:
    _check_no_false_match(*case)


def _check_noise(text: str) -> None:
    found = find_transfer_reference(text)
    assert found is None or (is_valid_reference(found) and _spelled_in(found, text)), (text, found)


_NOISE_WORDS = st.sampled_from(
    [
        "PH",
        "PHI",
        "PHAN",
        "PHAM",
        "ph7k",
        "HO",
        "SO",
        "0123",
        "45678",
        "9",
        "AB",
        "XYZ",
        "CT",
        "TU",
        "Q",
        "MZ2F",
        "3QX9",
        "PH3Q",
        "000",
        "111",
    ]
)
_NOISE_TEXTS = st.one_of(
    st.text(max_size=120),
    st.randoms(use_true_random=False).map(_noise),
    st.lists(
        st.tuples(_NOISE_WORDS, st.sampled_from([" ", ".", "-", "", ",", "/"])), max_size=12
    ).map(lambda parts: "".join(word + gap for word, gap in parts)),
)


@_FAST
@given(_NOISE_TEXTS)
def test_noise_never_yields_a_reference_that_is_not_written_in_it(text: str) -> None:
    _check_noise(text)


@pytest.mark.slow
@_SLOW
@given(_NOISE_TEXTS)
def test_noise_never_yields_a_reference_that_is_not_written_in_it_100k(text: str) -> None:
    _check_noise(text)


@settings(max_examples=1000, deadline=None)
@given(st.randoms(use_true_random=False))
def test_an_intact_reference_between_real_prefixes_and_suffixes_is_found(
    rnd: random.Random,
) -> None:
    reference = _reference(rnd)
    size = rnd.choice([12, 4, 3, 6])
    pieces = [reference[i : i + size] for i in range(0, 12, size)]
    # A group that itself begins with PH reads as a second reference start (rule 3): refused.
    assume(not any(piece.startswith("PH") for piece in pieces[1:]))
    written = rnd.choice([" ", "-", "."]).join(pieces)
    if rnd.random() < 0.5:
        written = written.lower()
    memo = rnd.choice(_PREFIXES[:6]) + written + rnd.choice(_SUFFIXES[:5])
    assert find_transfer_reference(memo) == reference


# ------------------------------------------------------------------ the earlier implementation
#
# ``find_transfer_reference`` reads only from the tokens that begin with PH (found by one
# regular expression) instead of cutting the whole memo into chains first, for speed. Its
# answers must be those of the implementation it replaced, kept here word for word as the
# oracle (with its own ``_fold``), over every kind of memo the tests above generate.

_ORACLE_TOKEN = re.compile(r"[0-9A-Za-z]+")
_ORACLE_SOFT_GAP = re.compile(r"[\s.\-]+")
_ORACLE_GROUPINGS = frozenset(
    {(6, 6), (4, 4, 4), (3, 3, 3, 3), (2, 2, 2, 2, 2, 2), (2, 10), (2, 5, 5)}
)


def _oracle_fold(token: str) -> str:
    upper = token.upper()
    if any(char.isdigit() for char in upper):
        return upper.translate(str.maketrans({"O": "0", "I": "1", "L": "1"}))
    return upper


def _oracle_chains(text: str) -> list[list[tuple[str, str]]]:
    chains: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    end = 0
    for match in _ORACLE_TOKEN.finditer(text):
        gap = text[end : match.start()]
        if current and not _ORACLE_SOFT_GAP.fullmatch(gap):
            chains.append(current)
            current = []
        current.append((_oracle_fold(match.group()), gap))
        end = match.end()
    if current:
        chains.append(current)
    return chains


def _oracle_candidate(chain: list[tuple[str, str]], start: int) -> str | None:
    pieces = [chain[start][0]]
    gaps: list[str] = []
    length = len(pieces[0])
    for token, gap in chain[start + 1 :]:
        if length >= 12 or token.startswith("PH"):
            break
        pieces.append(token)
        gaps.append(gap)
        length += len(token)
    if length != 12:
        return None
    if len(pieces) > 1:
        grouped = len(set(gaps)) == 1 and tuple(map(len, pieces)) in _ORACLE_GROUPINGS
        wrapped = len(pieces) == 2 and "\n" in gaps[0]
        if not (grouped or wrapped):
            return None
    joined = "".join(pieces)
    return joined if is_valid_reference(joined) else None


def _oracle(noisy_text: str) -> str | None:
    found: set[str] = set()
    starts: set[tuple[int, int]] = set()
    fragments: list[tuple[int, int]] = []
    for chain_index, chain in enumerate(_oracle_chains(noisy_text)):
        for start, (token, _) in enumerate(chain):
            if not token.startswith("PH"):
                continue
            if len(token) >= 8 and set(REFERENCE_ALPHABET).issuperset(token):
                fragments.append((chain_index, start))
            candidate = _oracle_candidate(chain, start)
            if candidate is not None:
                found.add(candidate)
                starts.add((chain_index, start))
    if len(found) != 1 or any(fragment not in starts for fragment in fragments):
        return None
    return found.pop()


@st.composite
def _crowded_memos(draw: st.DrawFn) -> str:
    """Memos dense in what the finder weighs: several references, fragments, PH words,
    groups, look-alikes, soft and hard gaps, wraps."""
    rnd = draw(st.randoms(use_true_random=False))
    parts = []
    for _ in range(rnd.randint(1, 8)):
        kind = rnd.random()
        if kind < 0.4:
            parts.append(_spelled(rnd, _damaged(rnd, _reference(rnd))))
        elif kind < 0.6:
            reference = _reference(rnd)
            parts.append(reference[: rnd.randint(2, 12)])
        else:
            parts.append(rnd.choice(["PH", "ph", "Ph0", "PHI", "phan", "0123", "3QX9", "MZ2F",
                                     "AB", "oIl", "PHL0", "9", "ẞ", "đ"]))  # fmt: skip
        parts.append(rnd.choice([" ", "-", ".", "\n", " - ", ",", "/", "_", "", ". ", "\t"]))
    return "".join(parts)


@_FAST
@given(st.one_of(mangled_memos().map(lambda case: case[0]), _NOISE_TEXTS, _crowded_memos()))
def test_answers_are_those_of_the_chain_by_chain_implementation(memo: str) -> None:
    assert find_transfer_reference(memo) == _oracle(memo), memo


@pytest.mark.slow
@_SLOW
@given(st.one_of(mangled_memos().map(lambda case: case[0]), _NOISE_TEXTS, _crowded_memos()))
def test_answers_are_those_of_the_chain_by_chain_implementation_100k(memo: str) -> None:
    assert find_transfer_reference(memo) == _oracle(memo), memo
