"""Accession numbers: the barcode on every specimen label (pure, no I/O).

Format: two digits of the year, seven digits of sequence, one check digit (10 digits in all).
All digits, so Code128 subset C packs them into short bars; 10 digits cannot be taken for an
11-digit fødselsnummer. The check digit is ISO/IEC 7064 MOD 11,10, which catches every single
wrong digit and every swap of two neighbouring digits, the errors people make when they type.
"""

from __future__ import annotations

BODY_LENGTH = 9
LENGTH = BODY_LENGTH + 1


def iso7064_mod11_10(digits: str) -> int:
    """The check digit of ISO/IEC 7064 MOD 11,10 (a hybrid system, clause 6 of the standard)."""
    product = 10
    for char in digits:
        total = (product + int(char)) % 10
        if total == 0:
            total = 10
        product = (total * 2) % 11
    return (11 - product) % 10


def make(year: int, sequence: int) -> str:
    body = f"{year % 100:02d}{sequence % 10_000_000:07d}"
    return body + str(iso7064_mod11_10(body))


def normalise(text: str) -> str:
    """What a scanner or a person typed, without spaces, dashes or a trailing newline."""
    return "".join(ch for ch in text.strip() if ch not in " -")


def is_valid(text: str) -> bool:
    value = normalise(text)
    return (
        len(value) == LENGTH
        and value.isascii()
        and value.isdigit()
        and iso7064_mod11_10(value[:-1]) == int(value[-1])
    )
