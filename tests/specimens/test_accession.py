"""Accession numbers: the Damm check digit catches single errors and neighbour swaps."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session

from lab.specimens import accession

sequences = st.integers(min_value=0, max_value=9_999_999)
years = st.integers(min_value=2000, max_value=2099)


@given(year=years, sequence=sequences)
def test_made_numbers_are_valid_and_scanner_friendly(year: int, sequence: int) -> None:
    number = accession.make(year, sequence)
    assert len(number) == accession.LENGTH and number.isdigit()
    assert accession.is_valid(number)
    assert accession.is_valid(f" {number[:4]}-{number[4:]}\n")  # scanners add a newline


@given(year=years, sequence=sequences, position=st.integers(0, 9), delta=st.integers(1, 9))
def test_every_single_wrong_digit_is_caught(
    year: int, sequence: int, position: int, delta: int
) -> None:
    number = accession.make(year, sequence)
    wrong = number[:position] + str((int(number[position]) + delta) % 10) + number[position + 1 :]
    assert not accession.is_valid(wrong)


@given(year=years, sequence=sequences, position=st.integers(0, 8))
def test_every_swap_of_neighbours_is_caught(year: int, sequence: int, position: int) -> None:
    number = accession.make(year, sequence)
    swapped = number[:position] + number[position + 1] + number[position] + number[position + 2 :]
    if swapped != number:
        assert not accession.is_valid(swapped)


def test_not_a_number() -> None:
    assert not accession.is_valid("ABCDEFGHIJ")
    assert not accession.is_valid("")
    assert not accession.is_valid("２６０００００００１")  # full-width digits are not ASCII


def test_the_database_makes_the_same_numbers(db: Session) -> None:
    """The SQL function a new order's INSERT numbers its tubes with (migration 0024) agrees
    with `accession.make` for every last digit and the edges of the sequence."""
    rng = random.Random(24)
    sequences = [0, 1, 9, 10, 9_999_999, 10_000_000, 12_345_678_901]
    sequences += [rng.randrange(0, 10**9) for _ in range(2_000)]
    for year in (2000, 2026, 2099, 2100):
        made = db.execute(
            text("SELECT accession_number(:year, s) FROM unnest(CAST(:sequences AS BIGINT[])) s"),
            {"year": year, "sequences": sequences},
        ).scalars()
        assert list(made) == [accession.make(year, sequence) for sequence in sequences]
