"""Norwegian person identifiers: fødselsnummer, D-number and H-number (pure, no I/O).

The 11 digits are DDMMYY III K1 K2. K1 and K2 are modulus-11 check digits with the weights
published by Skatteetaten (the Norwegian Tax Administration, keeper of the National Population
Register): K1 over the first nine digits with 3 7 6 1 8 9 4 5 2, K2 over the first ten with
5 4 3 2 7 6 5 4 3 2; a remainder giving 10 means the number cannot exist.
A D-number (temporary number for people not resident) adds 4 to the first digit (day + 40).
An H-number (help number assigned by health services) adds 4 to the third digit (month + 40).
The century follows from the individual number III (the series in the population register
regulation, repeated in KITH/HIS 1001:2010 "Identifikatorer for personer").
A felles hjelpenummer (FH-number, issued by Norsk Helsenett for patients without a known
fødselsnummer) has 11 digits with the same two check digits, first digit 8 or 9, and carries no
birth date or sex.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

K1_WEIGHTS = (3, 7, 6, 1, 8, 9, 4, 5, 2)
K2_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


class IdentifierKind(StrEnum):
    FNR = "FNR"  # fødselsnummer
    DNR = "DNR"  # D-nummer
    HNR = "HNR"  # H-nummer (a health service's own help number, month + 40)
    FHN = "FHN"  # felles hjelpenummer (national help number, first digit 8 or 9)
    OTHER = "OTHER"  # anything else, e.g. a hospital's local patient number


# HL7 assigning authorities seen for these identifiers in Norwegian traffic: the OIDs of the
# Norwegian identifier systems (2.16.578.1.12.4.1.4.1 fødselsnummer, .2 D-nummer, .3 felles
# hjelpenummer, as used by HelseID and the Norwegian FHIR profiles) and plain names.
AUTHORITY_KINDS: dict[str, IdentifierKind] = {
    "2.16.578.1.12.4.1.4.1": IdentifierKind.FNR,
    "2.16.578.1.12.4.1.4.2": IdentifierKind.DNR,
    "2.16.578.1.12.4.1.4.3": IdentifierKind.FHN,
    "FNR": IdentifierKind.FNR,
    "DNR": IdentifierKind.DNR,
    "HNR": IdentifierKind.HNR,
    "FHN": IdentifierKind.FHN,
}


class IdentifierError(ValueError):
    """The identifier is not a valid number of the kind it claims to be (`code` names why)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class NationalIdentifier:
    value: str
    kind: IdentifierKind
    birth_date: date | None  # None for an FH-number
    # The third digit of the individual number is even for women and odd for men.
    sex: str | None


def check_digits(first_nine: str) -> tuple[int, int] | None:
    """K1 and K2 for the first nine digits, or None when no valid number starts with them."""
    digits = [int(c) for c in first_nine]
    k1 = 11 - sum(w * d for w, d in zip(K1_WEIGHTS, digits, strict=True)) % 11
    if k1 == 11:
        k1 = 0
    if k1 == 10:
        return None
    k2 = 11 - sum(w * d for w, d in zip(K2_WEIGHTS, [*digits, k1], strict=True)) % 11
    if k2 == 11:
        k2 = 0
    if k2 == 10:
        return None
    return k1, k2


def _century(year2: int, individual: int) -> int | None:
    if individual <= 499:
        return 1900
    if individual <= 749 and year2 >= 54:
        return 1800
    if individual >= 500 and year2 <= 39:
        return 2000
    if individual >= 900 and year2 >= 40:
        return 1900
    return None


def parse_national_identifier(value: str) -> NationalIdentifier:
    """Validate an 11-digit Norwegian identifier and tell its kind, birth date and sex."""
    text = value.strip().replace(" ", "")
    if len(text) != 11 or not text.isascii() or not text.isdigit():
        raise IdentifierError("must be 11 digits", "id_length")
    if text[0] in "89":
        if check_digits(text[:9]) != (int(text[9]), int(text[10])):
            raise IdentifierError("check digits do not match", "id_check_digits")
        return NationalIdentifier(value=text, kind=IdentifierKind.FHN, birth_date=None, sex=None)
    day, month = int(text[0:2]), int(text[2:4])
    kind = IdentifierKind.FNR
    if day > 40:
        kind, day = IdentifierKind.DNR, day - 40
    if month > 40:
        if kind is IdentifierKind.DNR:
            raise IdentifierError("both day and month are shifted by 40", "id_shifted")
        kind, month = IdentifierKind.HNR, month - 40
    expected = check_digits(text[:9])
    if expected is None or expected != (int(text[9]), int(text[10])):
        raise IdentifierError("check digits do not match", "id_check_digits")
    year2, individual = int(text[4:6]), int(text[6:9])
    century = _century(year2, individual)
    if century is None:
        raise IdentifierError("individual number does not fit the birth year", "id_individual")
    try:
        born = date(century + year2, month, day)
    except ValueError as exc:
        raise IdentifierError("the date part is not a real date", "id_date") from exc
    return NationalIdentifier(
        value=text, kind=kind, birth_date=born, sex="F" if int(text[8]) % 2 == 0 else "M"
    )


def kind_for(authority: str, type_code: str) -> IdentifierKind:
    """Which kind an identifier from the record claims to be (assigning authority or type)."""
    for key in (authority.strip(), type_code.strip()):
        kind = AUTHORITY_KINDS.get(key.upper()) or AUTHORITY_KINDS.get(key)
        if kind is not None:
            return kind
    return IdentifierKind.OTHER
