"""Abnormal flags of a result from its reference range and critical limits (pure).

Flags follow HL7 v2.5.1 table 0078 (OBX-8): L below low normal, H above high normal,
LL below lower panic limit, HH above upper panic limit. A value given with a comparator
("<5", ">100") is flagged only when the comparator makes the side certain.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

COMPARATORS = ("<=", ">=", "<", ">")


@dataclass(frozen=True, slots=True, kw_only=True)
class NumericValue:
    value: Decimal
    comparator: str | None = None  # "<", ">", "<=", ">="


def parse_numeric(text: str) -> NumericValue:
    """`5.2`, `5,2` (Norwegian decimal comma), `<5`, `> 100`. Raises ValueError otherwise."""
    raw = text.strip().replace(" ", "")
    comparator = None
    for candidate in COMPARATORS:
        if raw.startswith(candidate):
            comparator, raw = candidate, raw[len(candidate) :]
            break
    raw = raw.replace(",", ".")
    if not raw or raw.count(".") > 1:
        raise ValueError(f"{text!r} is not a number")
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise ValueError(f"{text!r} is not a number") from exc
    if not value.is_finite():
        raise ValueError(f"{text!r} is not a number")
    return NumericValue(value=value, comparator=comparator)


def compute(
    value: NumericValue,
    *,
    low: Decimal | None,
    high: Decimal | None,
    critical_low: Decimal | None,
    critical_high: Decimal | None,
) -> list[str]:
    below = value.comparator in (None, "<", "<=")
    above = value.comparator in (None, ">", ">=")
    v = value.value
    strict = value.comparator in ("<", ">")
    if critical_low is not None and below and (v < critical_low or (strict and v <= critical_low)):
        return ["LL"]
    if (
        critical_high is not None
        and above
        and (v > critical_high or (strict and v >= critical_high))
    ):
        return ["HH"]
    if low is not None and below and (v < low or (strict and v <= low)):
        return ["L"]
    if high is not None and above and (v > high or (strict and v >= high)):
        return ["H"]
    return []


def is_critical(flags: list[str]) -> bool:
    return "LL" in flags or "HH" in flags
