"""Catalog in and out of the JSON API."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class ReferenceIntervalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    sex: str
    age_min_days: int
    age_max_days: int
    low: Decimal | None
    high: Decimal | None
    source: str


class LabTestOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    code: str
    name_nb: str
    name_en: str
    loinc: str | None
    loinc_aliases: list[str] = []
    nlk: str | None
    specimen_type: str
    container: str
    result_type: str
    unit: str | None
    ucum: str | None = None
    decimals: int
    critical_low: Decimal | None
    critical_high: Decimal | None
    active: bool
    reference_intervals: list[ReferenceIntervalOut]


class ReferenceIntervalIn(BaseModel):
    sex: Literal["", "F", "M"] = ""
    age_min_years: Decimal = Field(default=Decimal(0), ge=0)
    age_max_years: Decimal = Field(default=Decimal(120), gt=0)
    # Bands under a year are published in days (newborns: "0-14 days"); when given, these
    # win over the years above (inclusive minimum, exclusive maximum, days of age).
    age_min_days: int | None = Field(default=None, ge=0)
    age_max_days: int | None = Field(default=None, gt=0)
    low: Decimal | None = None
    high: Decimal | None = None
    source: str = Field(min_length=1, description="Where the interval is published.")


class LabTestIn(BaseModel):
    code: str = Field(pattern=r"^[A-Z0-9-]{1,20}$")
    name_nb: str = Field(min_length=1, max_length=200)
    name_en: str = Field(min_length=1, max_length=200)
    loinc: str | None = Field(default=None, pattern=r"^\d{1,7}-\d$")
    loinc_aliases: list[Annotated[str, Field(pattern=r"^\d{1,7}-\d$")]] = Field(
        default_factory=list,
        description="Other LOINC codes senders use for this test (accepted in orders).",
    )
    nlk: str | None = Field(default=None, max_length=20)
    specimen_type: str = Field(min_length=1, max_length=10)
    container: str = Field(min_length=1, max_length=20)
    result_type: Literal["numeric", "text", "coded"] = "numeric"
    unit: str | None = Field(default=None, max_length=30)
    ucum: str | None = Field(
        default=None,
        max_length=30,
        description="The unit in UCUM, when `unit` is written otherwise (e.g. mIU/L: m[IU]/L).",
    )
    decimals: int = Field(default=0, ge=0, le=6)
    critical_low: Decimal | None = None
    critical_high: Decimal | None = None
    critical_source: str = ""
    allowed_codes: list[str] | None = None
    turnaround_minutes: int | None = Field(default=None, gt=0)
    reference_intervals: list[ReferenceIntervalIn] = Field(default_factory=list)


class PanelOut(BaseModel):
    code: str
    name_nb: str
    name_en: str
    tests: list[str]
