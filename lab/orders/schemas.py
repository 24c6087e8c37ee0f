"""Orders in and out of the JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from lab.patients.schemas import PatientIn


class TestRequestIn(BaseModel):
    code: str = Field(min_length=1, max_length=40, description="Local code, panel code or LOINC")
    system: str = Field(default="L", max_length=20, description="L (local) or LN (LOINC)")


class OrderIn(BaseModel):
    placer_order_number: str = Field(min_length=1, max_length=64)
    placer_namespace: str = Field(default="", max_length=64)
    patient: PatientIn | None = None
    patient_id: int | None = None
    tests: list[TestRequestIn] = Field(min_length=1)
    priority: Literal["routine", "urgent", "stat"] = "routine"
    ordering_clinician: str = Field(default="", max_length=200)
    ordering_location: str = Field(default="", max_length=200)
    clinical_info: str = Field(default="", max_length=2000)
    collected_at: datetime | None = None


class AddTestIn(BaseModel):
    code: str = Field(min_length=1, max_length=40)
    system: str = Field(default="L", max_length=20)


class CancelTestsIn(BaseModel):
    codes: list[str] | None = Field(default=None, description="Omit to cancel every open test")
    reason: str = Field(min_length=1, max_length=1000)


class OrderedTestOut(BaseModel):
    code: str
    name: str
    status: str
    specimen: str | None
    add_on: bool
    panel: str | None


class SpecimenBrief(BaseModel):
    accession_number: str
    status: str
    container: str
    specimen_type: str


class OrderOut(BaseModel):
    filler_order_number: str
    placer_order_number: str
    placer_namespace: str
    patient_id: int
    status: str
    priority: str
    ordering_clinician: str
    ordering_location: str
    clinical_info: str
    created_at: datetime
    tests: list[OrderedTestOut]
    specimens: list[SpecimenBrief]
