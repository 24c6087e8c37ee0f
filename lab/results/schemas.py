"""Results in and out of the JSON API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ResultIn(BaseModel):
    accession_number: str = Field(min_length=1, max_length=20)
    test_code: str = Field(min_length=1, max_length=20)
    value: str = Field(min_length=1, max_length=200, description="5.2, 5,2, <5, or text")
    unit: str | None = Field(default=None, max_length=30)
    observed_at: datetime | None = None
    comment: str = Field(default="", max_length=2000)


class CriticalIn(BaseModel):
    notified_person: str = Field(min_length=1, max_length=200)
    notified_at: datetime
    read_back: bool


class VerifyIn(BaseModel):
    critical: CriticalIn | None = None
    comment: str = Field(default="", max_length=2000)


class CorrectIn(BaseModel):
    value: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=1000)
    comment: str = Field(default="", max_length=2000)


class ChooseIn(BaseModel):
    measurement_id: int
    reason: str = Field(
        default="", max_length=1000, description="required when the result is released already"
    )


class SetAsideIn(BaseModel):
    reason: str = Field(min_length=1, max_length=1000)


class CancelIn(BaseModel):
    reason: str = Field(min_length=1, max_length=1000)


class ReplaceIn(BaseModel):
    """The right value of a result not yet verified, and why the old one was wrong."""

    value: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=1000)
    comment: str = Field(default="", max_length=2000)


class FixIn(BaseModel):
    """Why a result not yet verified is measured again or discarded."""

    reason: str = Field(min_length=1, max_length=1000)


class ResultVersionOut(BaseModel):
    version: int
    status: str
    value: str
    unit: str | None
    flags: list[str]
    author: str
    reason: str
    comment: str
    instrument: str
    instrument_flags: str
    critical_notification: str
    created_at: datetime


class MeasurementOut(BaseModel):
    id: int
    number: int
    origin: str  # first, rerun, dilution, repeat
    reported: bool  # the one the result reports now
    value: str
    unit: str | None
    original_value: str
    original_unit: str
    dilution: str
    preliminary: bool
    instrument: str
    instrument_flags: str
    observed_at: datetime | None
    recorded_at: datetime
    waiting_for_review: bool  # came after release and nobody has looked at it yet


class HoldOut(BaseModel):
    # plausibility, critical, delta, instrument_flag, no_reference_interval, interference, qc, rule
    code: str
    text: str = Field(description="why, as an English sentence")
    key: str = Field(
        default="", description="the same reason as a stable name, to translate (with params)"
    )
    params: dict[str, str] = Field(
        default_factory=dict, description="the figures and names the reason concerns"
    )


class ResultOut(BaseModel):
    id: int
    accession_number: str
    test_code: str
    loinc: str | None
    value: str
    unit: str | None
    flags: list[str]
    reference_range: str
    status: str
    version: int
    observed_at: datetime | None
    verified_at: datetime | None
    verified_by: str | None = Field(
        description='who verified it: a user name, or "autoverification v<N>" (rule set version)'
    )
    holds: list[HoldOut] = Field(description="why it waits for a person; empty when none")
    ruleset_version: int | None = Field(
        default=None, description="the autoverification rule set version that judged it"
    )
    versions: list[ResultVersionOut] | None = None
    measurements: list[MeasurementOut] | None = None
