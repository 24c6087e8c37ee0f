"""A result's state as one value: what a version says, and what the result row shows of it.

Every change of a result (a measurement, a rerun, a verification, a correction, a
cancellation) makes a new `ResultState` from the current one and hands it to
`lab.results.writing.write_versions`, which appends it as a version and copies it onto the
result row. The names of the columns are listed here once: `VERSION_COLUMNS` (what every
version keeps) and `CURRENT_COLUMNS` (what the result row carries for the work queues).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from lab.audit import Actor
from lab.rules import Hold, HoldCode
from lab.tables.results import (
    MeasurementOrigin,
    Result,
    ResultStatus,
    ResultVersion,
    StoredMeasurement,
)

# Columns of `result_version` that hold the state (besides result_id, version, author,
# reason and created_at, which say who made the version and why).
VERSION_COLUMNS = (
    "status",
    "value_numeric",
    "value_text",
    "comparator",
    "unit",
    "flags",
    "reference_low",
    "reference_high",
    "instrument_flags",
    "instrument",
    "operator",
    "observed_at",
    "comment",
    "critical_notification",
    "measurement_id",
    "holds",
    "ruleset_version",
    "judgement",
)
# Columns of `result` copied from the newest state, for the queues and lists (the measurement
# reported is named by the newest version).
CURRENT_COLUMNS = (
    "status",
    "value_numeric",
    "value_text",
    "comparator",
    "unit",
    "flags",
    "observed_at",
    "verified_at",
    "verified_by",
    "holds",
    "ruleset_version",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultState:
    """A result as one version states it."""

    status: ResultStatus
    value_numeric: Decimal | None = None
    value_text: str | None = None
    comparator: str | None = None  # "<", ">", "<=", ">=" for a value given as "<5"
    unit: str | None = None
    flags: tuple[str, ...] = ()  # HL7 table 0078: L, H, LL, HH
    reference_low: Decimal | None = None
    reference_high: Decimal | None = None
    instrument_flags: str = ""
    instrument: str = ""
    operator: str = ""
    observed_at: datetime | None = None
    comment: str = ""
    critical_notification: str = ""
    verified_at: datetime | None = None
    verified_by: str | None = None
    measurement_id: int | None = None  # the measurement reported; set by the writer when new
    holds: tuple[Hold, ...] = ()  # every reason it waits for a person
    ruleset_version: int | None = None  # the autoverification rule set that judged it
    # What the reviewer is shown of the judgement (the delta with its limit, implausible, ...).
    judgement: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, result: Result) -> ResultState:
        """The current state of a stored result (its newest version and its row)."""
        current: ResultVersion = result.versions[-1]
        return cls(
            status=ResultStatus(current.status),
            value_numeric=current.value_numeric,
            value_text=current.value_text,
            comparator=current.comparator,
            unit=current.unit,
            flags=tuple(current.flags),
            reference_low=current.reference_low,
            reference_high=current.reference_high,
            instrument_flags=current.instrument_flags,
            instrument=current.instrument,
            operator=current.operator,
            observed_at=current.observed_at,
            comment=current.comment,
            critical_notification=current.critical_notification,
            verified_at=result.verified_at,
            verified_by=result.verified_by,
            measurement_id=current.measurement_id,
            holds=tuple(
                Hold(
                    code=HoldCode(hold["code"]),
                    text=hold["text"],
                    key=hold.get("key", ""),
                    params=hold.get("params", {}),
                )
                for hold in current.holds
            ),
            ruleset_version=current.ruleset_version,
            judgement=current.judgement,
        )

    def but(self, **changes: Any) -> ResultState:
        return replace(self, **changes)

    def version_columns(self) -> dict[str, Any]:
        row = {name: getattr(self, name) for name in VERSION_COLUMNS}
        row["flags"] = list(self.flags)
        row["holds"] = self.holds_json()
        row["judgement"] = dict(self.judgement) if self.judgement is not None else None
        return row

    def current_columns(self) -> dict[str, Any]:
        row = {name: getattr(self, name) for name in CURRENT_COLUMNS}
        row["flags"] = list(self.flags)
        row["holds"] = self.holds_json()
        return row

    def holds_json(self) -> list[dict[str, Any]]:
        return [
            {
                "code": hold.code.value,
                "text": hold.text,
                "key": hold.key,
                "params": dict(hold.params),
            }
            for hold in self.holds
        ]

    @property
    def critical(self) -> bool:
        """Beyond a critical limit, ours or the analyser's: the call must be documented."""
        return (
            any(flag in ("LL", "HH") for flag in self.flags)
            or any(hold.code is HoldCode.CRITICAL for hold in self.holds)
            or bool(self.judgement and self.judgement.get("critical"))
        )

    @property
    def value(self) -> str:
        if self.value_numeric is not None:
            return f"{self.comparator or ''}{self.value_numeric}"
        return self.value_text or ""

    def snapshot(self, version: int) -> dict[str, object]:
        """What the audit trail keeps of this state (before and after a change)."""
        snapshot: dict[str, object] = {
            "version": version,
            "status": self.status.value,
            "value": self.value,
            "unit": self.unit,
            "flags": list(self.flags),
        }
        if self.ruleset_version is not None:
            snapshot["ruleset_version"] = self.ruleset_version
            snapshot["holds"] = [hold.code.value for hold in self.holds]
        return snapshot


@dataclass(frozen=True, slots=True, kw_only=True)
class NewMeasurement:
    """A measurement as it will be stored (`measurement`), numbered by the writer."""

    specimen_id: int
    origin: MeasurementOrigin
    preliminary: bool
    value_numeric: Decimal | None
    value_text: str | None
    comparator: str | None
    unit: str | None
    original_value: str
    original_unit: str
    dilution: str
    instrument: str
    operator: str
    instrument_flags: str
    comment: str
    observed_at: datetime | None

    def same_as(self, stored: NewMeasurement | StoredMeasurement) -> bool:
        """A repeated transmission of the same result: same value, unit, time, analyser, kind."""
        return (
            self.value_numeric == stored.value_numeric
            and self.comparator == stored.comparator
            and self.value_text == stored.value_text
            and self.unit == stored.unit
            and self.observed_at == stored.observed_at
            and self.instrument == stored.instrument
            and self.dilution == stored.dilution
            and self.preliminary == stored.preliminary
        )

    def columns(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in MEASUREMENT_COLUMNS}


MEASUREMENT_COLUMNS = tuple(NewMeasurement.__dataclass_fields__)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewResult:
    """Where a result that is not stored yet belongs: its ordered test, tube and patient."""

    ordered_test_id: int
    specimen_id: int  # the tube it was measured in (an aliquot or the primary)
    test_id: int
    patient_id: int
    urgency: int  # of the tube: 0 stat, 1 urgent, 2 routine (the review queue sorts by it)


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One new version: the state it sets, who made it, and why (for the version and audit)."""

    state: ResultState
    action: str  # the audit action: result.record, result.verify, result.correct, ...
    author: str
    reason: str = ""  # "rerun", the reason of a correction or cancellation
    detail: str = ""  # the audit detail (a correction's reason, the critical call)
    # A new measurement that this version reports (the writer stores it and names it in the
    # state); the result's `recorded_at` moves to now.
    measurement: NewMeasurement | None = None
    by: Actor | None = None  # who made it, when not the caller (autoverification)
