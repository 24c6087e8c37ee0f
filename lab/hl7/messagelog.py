"""Reading the message log, and the operator's resend of a dead-lettered message.

Who sees what (docs/hl7-interface.md): the lab physician and the interface account see
everything, content included, and each look at a message's content is audited as a read of the
patient's data; the administrator operates the interface and sees metadata only (status,
partner, control ID, type, ACK and error texts, which carry no patient data).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from lab.hl7.codec.charsets import charset_codec
from lab.tables import (
    HL7_INBOUND_STATUSES,
    HL7_LIFECYCLE,
    HL7_OUTBOUND_STATUSES,
    INBOUND,
    OUTBOUND,
    Hl7Message,
    Hl7Status,
)
from lab.timeutil import utcnow

LOG_ROLES = frozenset({"physician", "admin", "interface"})
CONTENT_ROLES = frozenset({"physician", "interface"})
RESEND_ROLES = frozenset({"physician", "admin"})
STATUSES = {
    INBOUND: HL7_INBOUND_STATUSES,
    OUTBOUND: HL7_OUTBOUND_STATUSES,
}


def require_roles(actor: Actor, roles: frozenset[str]) -> None:
    if not actor.roles & roles:
        raise PermissionDenied(
            f"the HL7 message log is for the roles {', '.join(sorted(roles))}",
            code="hl7_log_roles",
            params={"roles": ", ".join(sorted(roles))},
        )


def may_read_content(actor: Actor) -> bool:
    return bool(actor.roles & CONTENT_ROLES)


def list_messages(
    session: Session,
    *,
    actor: Actor,
    direction: str | None = None,
    status: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[Hl7Message]:
    """Newest first; `before_id` pages back."""
    require_roles(actor, LOG_ROLES)
    query = select(Hl7Message).order_by(Hl7Message.id.desc()).limit(min(max(limit, 1), 1000))
    if direction is not None:
        if direction not in STATUSES:
            raise InvalidInput.field("direction", "use in or out")
        query = query.where(Hl7Message.direction == direction)
    if status is not None:
        known = STATUSES.get(direction or "", STATUSES[INBOUND] + STATUSES[OUTBOUND])
        if status not in known:
            raise InvalidInput.field("status", f"use one of {', '.join(known)}")
        query = query.where(Hl7Message.status == status)
    if before_id is not None:
        query = query.where(Hl7Message.id < before_id)
    return list(session.scalars(query))


def status_counts(session: Session, *, actor: Actor) -> dict[tuple[str, str], int]:
    """How many messages each (direction, status) holds: true counts for the monitor's tabs."""
    require_roles(actor, LOG_ROLES)
    query = select(Hl7Message.direction, Hl7Message.status, func.count()).group_by(
        Hl7Message.direction, Hl7Message.status
    )
    return {(direction, status): n for direction, status, n in session.execute(query).tuples()}


def read(session: Session, message_id: int, *, actor: Actor) -> Hl7Message:
    require_roles(actor, LOG_ROLES)
    message = session.get(Hl7Message, message_id)
    if message is None:
        raise NotFound(
            f"no HL7 message {message_id}", code="hl7_message_unknown", params={"id": message_id}
        )
    if may_read_content(actor) and message.patient_id is not None:
        audit.record_read(
            session,
            actor=actor,
            patient_id=message.patient_id,
            what="hl7_message",
            entity_id=message.id,
        )
    elif may_read_content(actor):
        # Not (yet) tied to a patient, the content still carries names and numbers.
        audit.record(
            session,
            actor=actor,
            action="read.hl7_message",
            entity_type="hl7_message",
            entity_id=message.id,
        )
    return message


def content_text(message: Hl7Message) -> str:
    codec = charset_codec(message.charset) or "utf-8"
    return message.raw.decode(codec, errors="replace")


def resend(session: Session, message_id: int, *, actor: Actor) -> Hl7Message:
    """Queue a dead outbound message again, with a fresh count of tries."""
    require_roles(actor, RESEND_ROLES)
    message = session.get(Hl7Message, message_id, with_for_update=True)
    if message is None:
        raise NotFound(
            f"no HL7 message {message_id}", code="hl7_message_unknown", params={"id": message_id}
        )
    if message.direction != OUTBOUND or message.status != Hl7Status.DEAD:
        raise Conflict(
            f"only dead outbound messages are resent; message {message_id} is "
            f"{message.direction} {message.status}",
            code="hl7_resend_only_dead",
            params={"id": message_id},
        )
    before = {"status": message.status, "attempts": message.attempts, "error": message.error}
    message.status = HL7_LIFECYCLE.check(message.status, Hl7Status.QUEUED)
    message.attempts = 0
    message.next_attempt_at = utcnow()
    message.finished_at = None
    audit.record(
        session,
        actor=actor,
        action="hl7.resend",
        entity_type="hl7_message",
        entity_id=message.id,
        patient_id=message.patient_id,
        before=before,
        after={"status": Hl7Status.QUEUED.value},
    )
    return message
