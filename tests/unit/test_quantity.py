"""Kubernetes quantities: the grammar exactly, every suffix, the range, and refusals."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bigfleet import quantity
from bigfleet.quantity import MAX_MILLI, InvalidQuantity

FAST = settings(max_examples=300, deadline=None)

BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
SUFFIXES = {**{k: Fraction(v) for k, v in BINARY.items()}, **DECIMAL}

# An independent reading of the grammar, exact with fractions, for small exponents only.
_REFERENCE = re.compile(
    r"([+-]?)([0-9]*)(?:\.([0-9]*))?(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?"
)


def reference(text: str) -> Fraction | None:
    match = _REFERENCE.fullmatch(text)
    if match is None or not (match[2] or match[3]):
        return None
    sign, whole, frac, suffix = match[1], match[2], match[3] or "", match[4] or ""
    value = Fraction(int(whole or "0")) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
    if suffix in SUFFIXES:
        value *= SUFFIXES[suffix]
    else:
        value *= Fraction(10) ** int(suffix[1:])
    return -value if sign == "-" else value


def expected_milli(value: Fraction) -> int | None:
    milli = math.ceil(value * 1000)
    return milli if abs(value * 1000) <= MAX_MILLI else None


numbers = st.builds(
    lambda whole, frac, form: {
        "int": whole,
        "int.": f"{whole}.",
        "int.frac": f"{whole}.{frac}",
        ".frac": f".{frac}",
    }[form],
    st.from_regex(r"[0-9]{1,12}", fullmatch=True),
    st.from_regex(r"[0-9]{1,12}", fullmatch=True),
    st.sampled_from(["int", "int.", "int.frac", ".frac"]),
)
suffixes = st.one_of(
    st.sampled_from(sorted(SUFFIXES)),
    st.builds(
        lambda e, sign, exp: f"{e}{sign}{exp}",
        st.sampled_from(["e", "E"]),
        st.sampled_from(["", "+", "-"]),
        st.integers(0, 40),
    ),
)
quantities = st.builds(
    lambda sign, number, suffix: f"{sign}{number}{suffix}",
    st.sampled_from(["", "+", "-"]),
    numbers,
    suffixes,
)


@FAST
@given(quantities)
def test_every_grammatical_quantity_parses_exactly_or_is_out_of_range(text: str) -> None:
    value = reference(text)
    assert value is not None
    want = expected_milli(value)
    if want is None:
        with pytest.raises(InvalidQuantity, match="out of range"):
            quantity.to_milli(text)
        return
    assert quantity.to_milli(text) == want
    assert Fraction(quantity.parse(text)) == value


@FAST
@given(st.integers(-MAX_MILLI, MAX_MILLI))
def test_canonical_text_round_trips_every_milli_value(milli: int) -> None:
    assert quantity.to_milli(quantity.from_milli(milli)) == milli


@FAST
@given(quantities)
def test_from_milli_of_to_milli_is_a_fixed_point(text: str) -> None:
    try:
        milli = quantity.to_milli(text)
    except InvalidQuantity:
        return
    canonical = quantity.from_milli(milli)
    assert quantity.to_milli(canonical) == milli
    assert quantity.from_milli(quantity.to_milli(canonical)) == canonical


@pytest.mark.parametrize("suffix", sorted(SUFFIXES))
def test_every_suffix(suffix: str) -> None:
    for n in (0, 1, 3, 7):
        want = expected_milli(n * SUFFIXES[suffix])
        if want is None:
            with pytest.raises(InvalidQuantity):
                quantity.to_milli(f"{n}{suffix}")
        else:
            assert quantity.to_milli(f"{n}{suffix}") == want


@pytest.mark.parametrize(
    ("text", "milli"),
    [
        ("2", 2000),
        ("500m", 500),
        ("8Gi", 8 * 2**30 * 1000),
        ("1e3", 10**6),
        ("2E3", 2 * 10**6),  # E followed by digits is an exponent
        ("1E-3", 1),
        ("1E+3", 10**6),
        ("5P", 5 * 10**18),
        ("1Pi", 2**50 * 1000),
        ("1.", 1000),
        (".5", 500),
        ("+.5", 500),
        ("-8", -8000),
        ("1n", 1),  # rounded up, never under-counted
        ("0.1m", 1),
        ("-1.5m", -1),  # up is toward +infinity
        ("1e-999999", 1),
        ("0e99999999999", 0),
        ("00012", 12000),
        ("9223372036854775807m", MAX_MILLI),
        ("9223372036854775.807", MAX_MILLI),
        ("-9223372036854775807m", -MAX_MILLI),
    ],
)
def test_worked_examples(text: str, milli: int) -> None:
    assert quantity.to_milli(text) == milli


def test_e_alone_is_exa_and_too_big_for_the_engine() -> None:
    assert quantity.parse("1E-9") == quantity.parse("1n")
    assert quantity.to_milli("9E-6") == 1  # 9 * 10^-6 units
    for text in ("1E", "2E", "1Ei", "8Ei", "8192Pi", "9223372036854775808m", "1e999999"):
        with pytest.raises(InvalidQuantity, match="out of range"):
            quantity.to_milli(text)
        with pytest.raises(InvalidQuantity, match="out of range"):
            quantity.parse(text)
    assert quantity.to_milli("9P") == 9 * 10**18  # the largest whole-P value that fits


def test_absurd_sizes_are_refused_without_arithmetic() -> None:
    # Each would take a huge integer to compute; the size check comes first.
    for text in ("1e999999999", "9" * 100_000 + "E", "1e2147483647", "1" + "0" * 50_000):
        with pytest.raises(InvalidQuantity, match="out of range"):
            quantity.to_milli(text)
    with pytest.raises(InvalidQuantity, match="exponent out of range"):
        quantity.to_milli("1e99999999999999999999999")
    assert quantity.to_milli("0." + "0" * 100_000 + "1") == 1
    assert quantity.to_milli("1" * 100_000 + "e-100000") == 112  # 0.111... units


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        " 1",
        "1 ",
        "1\n",
        ".",
        "-",
        "+",
        "Ki",
        "e3",
        "1e",
        "1e+",
        "1e1.5",
        "1Ee3",
        "1ki",
        "1K",
        "1KiB",
        "1mi",
        "0.1mi",
        "1i",
        "1.1.M",
        "1+1.0M",
        "--1",
        "1_000",
        "\u0661",  # a non-ASCII digit (ARABIC-INDIC ONE)
        "inf",
        "NaN",
        "0x10",
        "1,5",
    ],
)
def test_text_outside_the_grammar_is_refused_by_name(text: str) -> None:
    with pytest.raises(InvalidQuantity) as caught:
        quantity.to_milli(text)
    assert repr(text) in str(caught.value)
    assert isinstance(caught.value, ValueError)  # the operator catches ValueError per request


@FAST
@given(st.text(max_size=12))
def test_arbitrary_text_parses_as_the_reference_says_or_is_refused(text: str) -> None:
    value = reference(text) if text.isascii() else None
    if value is None:
        with pytest.raises(InvalidQuantity):
            quantity.to_milli(text)
        return
    want = expected_milli(value)
    if want is None:
        with pytest.raises(InvalidQuantity):
            quantity.to_milli(text)
    else:
        assert quantity.to_milli(text) == want


def test_long_text_is_shortened_in_the_message() -> None:
    with pytest.raises(InvalidQuantity) as caught:
        quantity.to_milli("x" * 10_000_000)
    assert len(str(caught.value)) < 200
    assert "10000000 characters" in str(caught.value)


def test_integers_are_quantities_in_range() -> None:
    assert quantity.to_milli(4) == 4000
    assert quantity.parse(4) == 4
    with pytest.raises(InvalidQuantity):
        quantity.to_milli(10**17)
