"""Specimens in and out of the JSON API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class SpecimenEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    at: datetime
    event: str
    actor: str
    detail: str


class SpecimenTestOut(BaseModel):
    code: str
    name: str
    status: str
    result_id: int | None
    value: str | None
    unit: str | None
    flags: list[str]
    result_status: str | None


class SpecimenOut(BaseModel):
    accession_number: str
    status: str
    specimen_type: str
    container: str
    order: str
    patient_id: int
    parent: str | None
    collected_at: datetime | None
    received_at: datetime | None
    rejection_reason: str | None
    tests: list[SpecimenTestOut]
    timeline: list[SpecimenEventOut]


class CollectIn(BaseModel):
    collected_at: datetime | None = None


class RejectIn(BaseModel):
    reason: str = Field(
        description="The lab's reject reason code, e.g. RH haemolysed, RC clotted, RA wrong "
        "container (sent to the record as the HL7 table 0490 code of the same meaning)"
    )
    comment: str = Field(default="", max_length=1000)


class AliquotIn(BaseModel):
    container: str = Field(default="", max_length=20)
