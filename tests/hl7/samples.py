"""Sample messages of the HL7 tests (tests/data/hl7); result reports are in testkit.results."""

from __future__ import annotations

from pathlib import Path

from lab.hl7.codec.er7 import Message, parse_message

DATA = Path(__file__).parent.parent / "data" / "hl7"


def sample_bytes(name: str) -> bytes:
    # Binary: the codec itself finds MSH-18 and decodes; newline="" would matter for text mode.
    return (DATA / name).read_bytes()


def sample(name: str) -> Message:
    return parse_message(sample_bytes(name))


def fnr_is_valid(number: str) -> bool:
    """Mod-11 check digits of a Norwegian fødselsnummer / D-number (test data only)."""
    if len(number) != 11 or not number.isdigit():
        return False
    digits = [int(char) for char in number]
    first = [3, 7, 6, 1, 8, 9, 4, 5, 2, 1]
    second = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2, 1]
    return (
        sum(w * d for w, d in zip(first, digits[:10], strict=True)) % 11 == 0
        and sum(w * d for w, d in zip(second, digits, strict=True)) % 11 == 0
    )
