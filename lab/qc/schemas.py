"""What the QC API takes and returns (pydantic)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LevelOut(BaseModel):
    level: int
    material: str
    lot: str
    expires_on: str
    mean: float | None
    sd: float | None
    unit: str
    source: str  # entered | established | establishing


class MovingOut(BaseModel):
    statistic: str
    block_size: int
    state: str  # no_data | in_control | alarm
    current: float | None
    control_low: float
    control_high: float
    # The stored alarm still open: raised when the statistic drifted (checked every minute).
    alarm_since: datetime | None = None
    alarm_value: float | None = None


class TestStatusOut(BaseModel):
    test: str
    state: str  # in_control | locked
    rule: str | None  # the rule that locked it
    since: datetime | None
    locked_by_run: int | None
    last_run_at: datetime | None
    last_run_status: str
    rules_applied: list[str]
    rule_choice: str
    levels: list[LevelOut]
    moving: MovingOut | None


class QcStatusOut(BaseModel):
    instrument: str
    tests: list[TestStatusOut]


class MaterialIn(BaseModel):
    name: str = Field(min_length=1, max_length=80)
    level: int = Field(ge=1, le=9)
    manufacturer: str = Field(default="", max_length=80)
    description: str = ""


class MaterialOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    level: int
    manufacturer: str
    description: str
    active: bool


class LotIn(BaseModel):
    material_id: int
    lot_number: str = Field(min_length=1, max_length=40)
    expires_on: date


class LotOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    material_id: int
    lot_number: str
    expires_on: date
    active: bool


class ControlIdIn(BaseModel):
    control_id: str = Field(min_length=1, max_length=80)
    lot_id: int
    instrument: str = Field(default="", max_length=64)


class TargetIn(BaseModel):
    lot_id: int
    test: str = Field(min_length=1, max_length=20)
    unit: str = Field(min_length=1, max_length=30)
    mean: Decimal | None = None  # leave mean and sd out to establish them from 20 runs
    sd: Decimal | None = None
    instrument: str = Field(default="", max_length=64)


class TargetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    lot_id: int
    instrument: str
    test_id: int
    unit: str
    mean: Decimal | None
    sd: Decimal | None
    source: str


class PolicyIn(BaseModel):
    test: str = Field(min_length=1, max_length=20)
    instrument: str = Field(default="", max_length=64)
    tea_percent: Decimal | None = None
    bias_percent: Decimal | None = None
    rules: list[str] | None = None
    note: str = ""


class ManualValueIn(BaseModel):
    lot_id: int
    value: str = Field(min_length=1, max_length=40)
    unit: str = Field(default="", max_length=30)


class ManualRunIn(BaseModel):
    instrument: str = Field(min_length=1, max_length=64)
    test: str = Field(min_length=1, max_length=20)
    run_at: datetime
    values: list[ManualValueIn] = Field(min_length=1, max_length=9)
    comment: str = ""


class ViolationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    rule: str
    severity: str
    scope: str
    points: list[dict[str, object]]


class PointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    level: int
    lot_id: int
    value: Decimal
    unit: str
    mean: Decimal | None
    sd: Decimal | None
    z: float | None
    excluded: bool


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    instrument: str
    test_id: int
    run_at: datetime
    source: str
    status: str
    rules_applied: list[str]
    first_rule: str
    all_levels: bool
    entered_by: str
    comment: str
    points: list[PointOut]
    violations: list[ViolationOut]


class OverrideIn(BaseModel):
    instrument: str = Field(min_length=1, max_length=64)
    test: str = Field(min_length=1, max_length=20)
    reason: str = Field(min_length=1, max_length=2000)


class RunActionIn(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


class RunActionOut(BaseModel):
    run_id: int
    at: datetime
    by: str
    text: str


class LockChangeOut(BaseModel):
    """One change of a lock: `locked` by a rejected run, or released by an accepted run of
    every level or by a person's override; the corrective actions written down against the
    run that locked it (`action_missing` when a release had none)."""

    instrument: str
    test: str
    at: datetime
    state: str
    rule: str
    locking_run_id: int | None
    released_by_run_id: int | None
    override_by: str | None
    override_reason: str | None
    actions: list[RunActionOut]
    action_missing: bool


class LockOut(BaseModel):
    instrument: str
    test: str
    state: str
    rule: str | None


class ProblemOut(BaseModel):
    id: int
    instrument: str
    control_id: str
    test_code: str | None
    value: str
    unit: str
    observed_at: datetime | None
    reason: str
    status: str


class DiscardIn(BaseModel):
    note: str = Field(min_length=1, max_length=2000)


class LookBackResultOut(BaseModel):
    result_id: int
    accession_number: str
    value: str
    unit: str
    status: str
    observed_at: datetime | None
    verified_at: datetime | None
    verified_by: str | None


class LookBackOut(BaseModel):
    instrument: str
    test: str
    since: datetime | None
    rejected_at: datetime | None
    results: list[LookBackResultOut]


class MovingSettingIn(BaseModel):
    test: str = Field(min_length=1, max_length=20)
    instrument: str = Field(default="", max_length=64)
    statistic: Literal["mean", "median"] = "mean"
    block_size: int = Field(ge=2, le=1000)
    truncation_low: Decimal
    truncation_high: Decimal
    target: Decimal
    control_low: Decimal
    control_high: Decimal
    note: str = ""
