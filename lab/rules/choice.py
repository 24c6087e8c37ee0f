"""Which of a test's measurements the rule set reports, when they differ.

A test may be measured more than once (a rerun, a dilution, a repeat on another analyser). When
the measurements agree nothing is chosen; when they differ, the rule set's `report_measurement`
for the test says what is reported:

- `person` (the default): the result waits for a person, who chooses one to report.
- `latest`: the newest measurement is reported.
- `in_range`: a measurement the analyser could only bound (`>350`, `<0.6`: outside its
  measuring range) gives way to one measured within the range, such as the diluted rerun of a
  sample above the range. When the measurements within the range differ among themselves, or
  none is within it, a person chooses.

Pure: a function of the measurements in arrival order, nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class MeasurementChoice(StrEnum):
    PERSON = "person"
    LATEST = "latest"
    IN_RANGE = "in_range"


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    """What the choice looks at of one measurement."""

    value: Decimal | None
    comparator: str | None = None  # "<" or ">" (and "<=", ">="): outside the measuring range
    text: str | None = None

    @property
    def key(self) -> tuple[Decimal | None, str | None, str | None]:
        return (self.value, self.comparator or None, self.text)


def chosen(policy: MeasurementChoice, measured: Sequence[Measured]) -> int | None:
    """The index of the measurement to report, or None when a person chooses."""
    if not measured:
        return None
    if len({m.key for m in measured}) == 1:
        return len(measured) - 1  # they agree: the newest, as ever
    if policy is MeasurementChoice.LATEST:
        return len(measured) - 1
    if policy is MeasurementChoice.IN_RANGE:
        inside = [i for i, m in enumerate(measured) if not m.comparator and m.value is not None]
        if inside and len({measured[i].key for i in inside}) == 1:
            return inside[-1]
    return None
