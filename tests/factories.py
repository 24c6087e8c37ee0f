"""Builders of valid test data (synthetic fødselsnummer, orders) shared by the tests."""

from __future__ import annotations

from datetime import date

from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.orders import service as orders
from lab.patients.identifiers import check_digits
from lab.patients.service import Demographics, IdentifierInput
from lab.tables import Order


def national_number(born: date, individual: int, *, d_number: bool = False) -> str:
    """A fødselsnummer (or D-number) with correct check digits for this birth date."""
    day = born.day + (40 if d_number else 0)
    for candidate in range(individual, individual + 40):
        first_nine = f"{day:02d}{born.month:02d}{born.year % 100:02d}{candidate % 1000:03d}"
        digits = check_digits(first_nine)
        if digits is not None:
            return first_nine + f"{digits[0]}{digits[1]}"
    raise ValueError("no valid number found")


def h_number(born: date, individual: int) -> str:
    for candidate in range(individual, individual + 40):
        first_nine = f"{born.day:02d}{born.month + 40:02d}{born.year % 100:02d}{candidate:03d}"
        digits = check_digits(first_nine)
        if digits is not None:
            return first_nine + f"{digits[0]}{digits[1]}"
    raise ValueError("no valid number found")


# A woman born 1984-03-15 (individual numbers 000-499 are the 1900s).
KARI_FNR = national_number(date(1984, 3, 15), 262)
# A man born 1950-07-01.
OLA_FNR = national_number(date(1950, 7, 1), 131)


def kari(fnr: str = KARI_FNR) -> Demographics:
    return Demographics(
        identifiers=[IdentifierInput(value=fnr, authority="FNR")],
        family_name="Østbø",
        given_name="Kari Åse",
        sex="F",
    )


def place(
    session: Session,
    actor: Actor,
    *,
    placer: str,
    tests: list[str],
    patient: Demographics | None = None,
    priority: str = "routine",
) -> Order:
    return orders.place(
        session,
        actor=actor,
        request=orders.OrderRequest(
            patient=patient or kari(),
            placer_order_number=placer,
            placer_namespace="HP",
            tests=[orders.TestRequest(code=code) for code in tests],
            priority=priority,
            ordering_clinician="12345^Lege^Lise",
            ordering_location="MED3",
        ),
    )
