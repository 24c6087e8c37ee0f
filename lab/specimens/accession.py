"""Accession numbers: the barcode on every specimen label (pure, no I/O).

Format: two digits of the year, seven digits of sequence, one check digit (10 digits in all).
All digits, so Code128 subset C packs them into short bars; 10 digits cannot be taken for an
11-digit fødselsnummer. The check digit is Damm's (H. M. Damm, "Totally anti-symmetric
quasigroups for all orders n != 2, 6", Discrete Mathematics 307 (2007) 715-729): its
quasigroup of order 10 catches every single wrong digit and every swap of two neighbouring
digits, the errors people make when they type. (ISO/IEC 7064 MOD 11,10, tried first, lets
some neighbour swaps through.)
"""

from __future__ import annotations

BODY_LENGTH = 9
LENGTH = BODY_LENGTH + 1

# The totally anti-symmetric quasigroup of order 10 as published by Damm.
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)


def damm_check_digit(digits: str) -> int:
    interim = 0
    for char in digits:
        interim = _DAMM[interim][int(char)]
    return interim


def make(year: int, sequence: int) -> str:
    body = f"{year % 100:02d}{sequence % 10_000_000:07d}"
    return body + str(damm_check_digit(body))


def normalise(text: str) -> str:
    """What a scanner or a person typed, without spaces, dashes or a trailing newline."""
    return "".join(ch for ch in text.strip() if ch not in " -")


def is_valid(text: str) -> bool:
    value = normalise(text)
    return (
        len(value) == LENGTH
        and value.isascii()
        and value.isdigit()
        and damm_check_digit(value) == 0
    )
