"""Norwegian fødselsnummer, D-number and H-number: check digits and date rules."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.patients.identifiers import (
    IdentifierError,
    IdentifierKind,
    check_digits,
    kind_for,
    parse_national_identifier,
)
from testkit.patients import with_check_digits

births = st.dates(min_value=date(1900, 1, 1), max_value=date(1999, 12, 31))


def build(day: int, month: int, year2: int, individual: int) -> str | None:
    """The number with exactly this date part and individual number, if it has check digits."""
    return with_check_digits(f"{day:02d}{month:02d}{year2:02d}{individual:03d}")


def test_a_published_style_example() -> None:
    # Weights from Skatteetaten: K1 = 11 - (3 7 6 1 8 9 4 5 2 . digits) mod 11.
    # 150384262: 3*1+7*5+6*0+1*3+8*8+9*4+4*2+5*6+2*2 = 183; 183 mod 11 = 7; K1 = 4.
    assert check_digits("150384262") == (4, 6)
    parsed = parse_national_identifier("15038426246")
    assert parsed.birth_date == date(1984, 3, 15)
    assert parsed.kind is IdentifierKind.FNR
    assert parsed.sex == "F"  # third digit of the individual number (2) is even


@settings(max_examples=300)
@given(born=births, individual=st.integers(0, 499))
def test_valid_numbers_parse_to_their_birth_date(born: date, individual: int) -> None:
    number = build(born.day, born.month, born.year % 100, individual)
    if number is None:
        return  # about one in eleven has no valid check digit
    parsed = parse_national_identifier(number)
    assert parsed.birth_date == born
    assert parsed.sex == ("F" if individual % 2 == 0 else "M")


@settings(max_examples=300)
@given(
    born=births,
    individual=st.integers(0, 499),
    position=st.integers(0, 10),
    delta=st.integers(1, 9),
)
def test_any_single_wrong_digit_is_caught(
    born: date, individual: int, position: int, delta: int
) -> None:
    number = build(born.day, born.month, born.year % 100, individual)
    if number is None:
        return
    wrong = number[:position] + str((int(number[position]) + delta) % 10) + number[position + 1 :]
    with pytest.raises(IdentifierError):
        parsed = parse_national_identifier(wrong)
        # A changed digit can land on another valid number only if the date part changed and
        # K1/K2 still fit, which mod 11 rules out for a single substitution.
        raise AssertionError(f"{wrong} accepted as {parsed}")


@given(born=births, individual=st.integers(0, 499))
def test_d_and_h_numbers(born: date, individual: int) -> None:
    d_number = build(born.day + 40, born.month, born.year % 100, individual)
    if d_number is not None:
        parsed = parse_national_identifier(d_number)
        assert parsed.kind is IdentifierKind.DNR and parsed.birth_date == born
    h_number = build(born.day, born.month + 40, born.year % 100, individual)
    if h_number is not None:
        parsed = parse_national_identifier(h_number)
        assert parsed.kind is IdentifierKind.HNR and parsed.birth_date == born


def test_centuries_follow_the_individual_number() -> None:
    for year2, individual, century in [(5, 600, 2000), (60, 950, 1900), (60, 600, 1800)]:
        number = next(n for i in range(individual, individual + 20) if (n := build(1, 1, year2, i)))
        assert parse_national_identifier(number).birth_date.year == century + year2


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("1503842624", "11 digits"),
        ("150384262467", "11 digits"),
        ("15O38426246", "11 digits"),
        ("15038426247", "check digits"),
        ("31028426240", "check digits"),  # 31 February, whatever the check digits
    ],
)
def test_rejects(value: str, why: str) -> None:
    with pytest.raises(IdentifierError, match=why.split()[0]):
        parse_national_identifier(value)


def test_impossible_date_with_good_check_digits() -> None:
    number = next(n for i in range(100, 200) if (n := build(31, 2, 84, i)))
    with pytest.raises(IdentifierError, match="real date"):
        parse_national_identifier(number)


def test_kind_from_authority_or_type() -> None:
    assert kind_for("2.16.578.1.12.4.1.4.1", "") is IdentifierKind.FNR
    assert kind_for("", "DNR") is IdentifierKind.DNR
    assert kind_for("fnr", "") is IdentifierKind.FNR
    assert kind_for("STOLAV", "PI") is IdentifierKind.OTHER


@given(body=st.integers(min_value=0, max_value=99_999_999), first=st.sampled_from("89"))
def test_felles_hjelpenummer(body: int, first: str) -> None:
    """FH-numbers (Norsk Helsenett): first digit 8 or 9, fnr check digits, no date or sex."""
    number = with_check_digits(f"{first}{body:08d}")
    if number is None:
        return
    parsed = parse_national_identifier(number)
    assert parsed.kind is IdentifierKind.FHN and parsed.birth_date is None and parsed.sex is None
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    with pytest.raises(IdentifierError):
        parse_national_identifier(wrong)
    assert kind_for("2.16.578.1.12.4.1.4.3", "") is IdentifierKind.FHN
