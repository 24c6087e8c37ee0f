"""The reference interval that applies to a patient, and the flag of a value against it.

Intervals are chosen by sex and age in days at collection, children included. A sex-specific
interval wins over one for both sexes; the narrowest age band wins. With no birth date, or a
sex the intervals do not cover (O, U), no interval applies unless one interval serves everybody:
the result is then held with `no_reference_interval` and never counts as unremarkable.

Flags follow HL7 v2.5.1 table 0078 (OBX-8): L, H, LL (below the lower critical limit), HH.
A value with a comparator ("<5", ">100") is flagged only when the comparator makes the side
certain.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from lab.rules.model import Interval


def interval_for(intervals: Iterable[Interval], sex: str, age_days: int | None) -> Interval | None:
    candidates = [
        interval
        for interval in intervals
        if interval.sex in ("", sex)
        and (age_days is None or interval.age_min_days <= age_days < interval.age_max_days)
    ]
    if not candidates:
        return None
    if age_days is None and len({(c.low, c.high) for c in candidates}) > 1:
        return None  # without a birth date we cannot choose between age bands
    return min(candidates, key=lambda c: (c.sex == "", c.age_max_days - c.age_min_days))


def flag_for(
    value: Decimal,
    comparator: str | None,
    *,
    low: Decimal | None,
    high: Decimal | None,
    critical_low: Decimal | None,
    critical_high: Decimal | None,
) -> str | None:
    below = comparator in (None, "<", "<=")
    above = comparator in (None, ">", ">=")
    strict = comparator in ("<", ">")
    if (
        critical_low is not None
        and below
        and (value < critical_low or (strict and value <= critical_low))
    ):
        return "LL"
    if (
        critical_high is not None
        and above
        and (value > critical_high or (strict and value >= critical_high))
    ):
        return "HH"
    if low is not None and below and (value < low or (strict and value <= low)):
        return "L"
    if high is not None and above and (value > high or (strict and value >= high)):
        return "H"
    return None
