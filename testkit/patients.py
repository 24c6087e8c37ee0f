"""Synthetic patients with valid Norwegian identifiers (test data only: no real person).

A fødselsnummer is DDMMYY, a three-digit individual number and two mod-11 check digits; a
D-number adds 40 to the day, an H-number 40 to the month (Skatteetaten; the check digits are
the lab module's own `check_digits`). Individual numbers 000-499 are births in 1900-1999.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

from lab.patients.identifiers import check_digits
from lab.patients.service import Demographics, IdentifierInput


def with_check_digits(first_nine: str) -> str | None:
    """The eleven digits, or None where no check digit fits these nine (mod 11 gives 10)."""
    digits = check_digits(first_nine)
    return None if digits is None else f"{first_nine}{digits[0]}{digits[1]}"


def national_number(
    born: date, individual: int = 0, *, d_number: bool = False, h_number: bool = False
) -> str:
    """A fødselsnummer (or D-, H-number) for `born`: the first individual number from
    `individual` on that has check digits."""
    day = born.day + (40 if d_number else 0)
    month = born.month + (40 if h_number else 0)
    for candidate in range(individual, individual + 40):
        number = with_check_digits(
            f"{day:02d}{month:02d}{born.year % 100:02d}{candidate % 1000:03d}"
        )
        if number is not None:
            return number
    raise ValueError(f"no valid number for {born} from individual number {individual}")


def random_national_number(rng: random.Random | None = None) -> str:
    """A fødselsnummer of someone born 1930-1999."""
    rng = rng or random.Random()
    born = date(rng.randint(1930, 1999), rng.randint(1, 12), rng.randint(1, 28))
    return national_number(born, rng.randint(0, 450))


@dataclass(frozen=True, slots=True, kw_only=True)
class SyntheticPatient:
    """A patient as the record names one in PID: identifier, name, birth date, sex."""

    fnr: str
    family: str
    given: str
    middle: str = ""
    sex: str = "F"  # HL7 table 0001
    born: date | None = None

    def demographics(self) -> Demographics:
        """The same patient as the order service takes one."""
        given = f"{self.given} {self.middle}".strip()
        return Demographics(
            identifiers=[IdentifierInput(value=self.fnr, authority="FNR")],
            family_name=self.family,
            given_name=given,
            sex=self.sex,
            birth_date=self.born,
        )


# A woman born 1984-03-15 and a man born 1950-07-01 (individual numbers 000-499: the 1900s).
KARI_FNR = national_number(date(1984, 3, 15), 262)
OLA_FNR = national_number(date(1950, 7, 1), 131)


def kari(fnr: str = KARI_FNR) -> Demographics:
    """Kari Åse Østbø, the tests' usual patient (no birth date given: the number has it)."""
    return SyntheticPatient(fnr=fnr, family="Østbø", given="Kari", middle="Åse").demographics()


_NAMES = [
    ("Sætre", "Ingrid", "F"),
    ("Nordmann", "Ola", "M"),
    ("Østbø", "Kari", "F"),
    ("Gaup", "Máhtte", "M"),  # Sami letters must survive the round trip
    ("Haugen", "Åse", "F"),
    ("Bakken", "Per", "M"),
]


def synthetic_patients(count: int, *, seed: int = 1) -> list[SyntheticPatient]:
    """`count` patients, the same ones for the same seed, born 1935-1999."""
    rng = random.Random(seed)
    patients: list[SyntheticPatient] = []
    for number in range(count):
        family, given, sex = _NAMES[number % len(_NAMES)]
        born = date(rng.randint(1935, 1999), rng.randint(1, 12), rng.randint(1, 28))
        fnr = national_number(born, rng.randint(0, 400))
        patients.append(SyntheticPatient(fnr=fnr, family=family, given=given, sex=sex, born=born))
    return patients
