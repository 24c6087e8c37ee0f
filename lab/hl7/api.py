"""JSON routes of the HL7 message log (docs/hl7-interface.md, "Message log")."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from lab.deps import CurrentActor, SessionDep
from lab.hl7 import messagelog
from lab.hl7.schemas import MessageDetailOut, MessageOut
from lab.tables import Hl7Message

router = APIRouter(prefix="/api/v1/messages", tags=["hl7"])


def _summary(message: Hl7Message) -> dict[str, object]:
    return {
        "id": message.id,
        "direction": message.direction,
        "status": message.status,
        "partner": message.partner,
        "sending_application": message.sending_application,
        "sending_facility": message.sending_facility,
        "control_id": message.control_id,
        "message_type": message.message_type,
        "ack_code": message.ack_code,
        "ack": message.ack,
        "error": message.error,
        "attempts": message.attempts,
        "next_attempt_at": message.next_attempt_at,
        "last_attempt_at": message.last_attempt_at,
        "created_at": message.created_at,
        "finished_at": message.finished_at,
    }


@router.get("", response_model=list[MessageOut])
def list_messages(
    session: SessionDep,
    actor: CurrentActor,
    direction: Annotated[Literal["in", "out"] | None, Query()] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1)] = None,
) -> list[MessageOut]:
    found = messagelog.list_messages(
        session, actor=actor, direction=direction, status=status, limit=limit, before_id=before_id
    )
    return [MessageOut.model_validate(_summary(message)) for message in found]


@router.get("/{message_id}", response_model=MessageDetailOut)
def read_message(message_id: int, session: SessionDep, actor: CurrentActor) -> MessageDetailOut:
    message = messagelog.read(session, message_id, actor=actor)
    content = messagelog.may_read_content(actor)
    out = MessageDetailOut.model_validate(
        _summary(message)
        | {
            "content": messagelog.content_text(message) if content else None,
            "commit_ack": message.commit_ack,
            "patient_id": message.patient_id if content else None,
            "order_id": message.order_id if content else None,
        }
    )
    return out


@router.post("/{message_id}/resend", response_model=MessageOut)
def resend_message(message_id: int, session: SessionDep, actor: CurrentActor) -> MessageOut:
    message = messagelog.resend(session, message_id, actor=actor)
    return MessageOut.model_validate(_summary(message))
