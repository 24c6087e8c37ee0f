"""The HL7 message log in and out of the JSON API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class MessageOut(BaseModel):
    """Metadata of one logged message: no patient data, so every role of the log sees it."""

    id: int
    direction: str = Field(description="in (from the record) or out (to the record)")
    status: str = Field(
        description="in: received, processed, error, rejected; "
        "out: queued, sent, acknowledged, failed, dead"
    )
    partner: str
    sending_application: str
    sending_facility: str
    control_id: str = Field(description="MSH-10")
    message_type: str = Field(description="MSH-9, e.g. OML^O21")
    ack_code: str | None = Field(description="MSA-1 of the ACK sent (in) or received (out)")
    ack: str | None = Field(description="The ACK as ER7 text (segments separated by CR)")
    error: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    created_at: datetime
    finished_at: datetime | None


class MessageDetailOut(MessageOut):
    """One message; `content` (the message itself) only for roles that may read patient data."""

    content: str | None = Field(
        description="The message as ER7 text; null for roles that see metadata only (admin)"
    )
    commit_ack: str | None
    patient_id: int | None
    order_id: int | None
