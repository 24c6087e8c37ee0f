"""Patients in and out of the JSON API."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class IdentifierIn(BaseModel):
    value: str = Field(min_length=1, max_length=64)
    authority: str = Field(
        default="",
        max_length=100,
        description="Assigning authority: FNR, DNR, HNR, their OIDs, or any other system name.",
    )


class PatientIn(BaseModel):
    identifiers: list[IdentifierIn] = Field(min_length=1)
    family_name: str = Field(min_length=1, max_length=200)
    given_name: str = Field(default="", max_length=200)
    birth_date: date | None = None
    sex: Literal["F", "M", "O", "U"] | None = None


class IdentifierOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    value: str
    authority: str
    kind: str


class PatientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    family_name: str
    given_name: str
    birth_date: date | None
    sex: str
    merged_into_id: int | None
    identifiers: list[IdentifierOut]


class MergeIn(BaseModel):
    surviving_patient_id: int
    merged_patient_id: int
    reason: str = Field(default="", max_length=1000)


class MergeOut(BaseModel):
    surviving_patient_id: int
    merged_patient_id: int
    moved_orders: int


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    at: object
    actor_name: str
    channel: str
    action: str
    entity_type: str
    entity_id: str
    detail: str
