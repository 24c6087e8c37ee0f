"""Reading HL7 data types out of segments while collecting problems for ERR.

Shared by the inbound mappings: each reader returns the value, or None after recording a
`Problem` that names segment, occurrence, field and component.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo

from lab.hl7.codec.er7 import NULL, Field, Segment
from lab.hl7.codec.errors import ErrorCode, Problem, Severity
from lab.hl7.codec.escapes import Null
from lab.hl7.codec.timestamps import parse_date, parse_timestamp
from lab.hl7.codec.types import CodedValue, EntityId, PatientIdentifier, Provider


@dataclass(slots=True)
class ProblemLog:
    """Problems found so far in one message."""

    problems: list[Problem] = field(default_factory=list)

    def add(
        self,
        segment: Segment | str,
        position: int | None,
        code: ErrorCode,
        message: str,
        *,
        component: int | None = None,
        severity: Severity = Severity.ERROR,
        sequence: int = 1,
    ) -> None:
        if isinstance(segment, Segment):
            segment_id, sequence = segment.name, segment.sequence
        else:
            segment_id = segment
        self.problems.append(
            Problem(
                segment_id=segment_id,
                segment_sequence=sequence,
                field_position=position,
                component=component,
                code=code,
                severity=severity,
                message=message,
            )
        )

    @property
    def has_errors(self) -> bool:
        return any(problem.severity is Severity.ERROR for problem in self.problems)


def coded(field_value: Field, first_component: int = 1) -> CodedValue | None:
    """A CE/CWE triplet starting at `first_component` (1, or 4 for the alternate)."""
    code = field_value.text(first_component)
    if not code:
        return None
    return CodedValue(
        code=code,
        text=field_value.text(first_component + 1),
        coding_system=field_value.text(first_component + 2),
    )


def entity_id(field_value: Field) -> EntityId | None:
    """EI (ORC-2, ORC-3, OBR-2 ...): entity ID ^ namespace ^ universal ID ^ its type."""
    identifier = field_value.text(1)
    if not identifier:
        return None
    return EntityId(
        id=identifier,
        namespace=field_value.text(2),
        universal_id=field_value.text(3),
        universal_id_type=field_value.text(4),
    )


def provider(field_value: Field) -> Provider | None:
    """First XCN repetition: ID ^ family name (FN.1) ^ given name ... ^ assigning authority (9)."""
    identifier = field_value.text(1)
    family = field_value.text(2)
    if not identifier and not family:
        return None
    return Provider(
        id=identifier,
        family=family,
        given=field_value.text(3),
        assigning_authority=field_value.text(9),
    )


def identifiers(field_value: Field) -> tuple[PatientIdentifier, ...]:
    """Every CX repetition that carries an ID (PID-3, MRG-1)."""
    found = []
    for repetition in field_value.repetitions():
        identifier = repetition.text(1)
        if identifier:
            found.append(
                PatientIdentifier(
                    id=identifier,
                    assigning_authority=repetition.text(4, 1),
                    assigning_authority_oid=repetition.text(4, 2),
                    identifier_type=repetition.text(5),
                )
            )
    return tuple(found)


def timestamp(
    segment: Segment, position: int, log: ProblemLog, zone: tzinfo, component: int = 1
) -> datetime | None:
    text = segment.component(position, component)
    if not text:
        return None
    try:
        return parse_timestamp(text, zone)
    except ValueError as exc:
        log.add(segment, position, ErrorCode.DATA_TYPE_ERROR, str(exc), component=component)
        return None


def update_text(leaf: str | Null) -> str | Null | None:
    """An ADT text value: NULL to delete, None when not sent."""
    if leaf is NULL:
        return NULL
    return leaf or None


def update_date(segment: Segment, position: int, log: ProblemLog) -> date | Null | None:
    leaf = segment.value(position)
    if leaf is NULL:
        return NULL
    if not leaf:
        return None
    try:
        return parse_date(leaf)
    except ValueError as exc:
        log.add(segment, position, ErrorCode.DATA_TYPE_ERROR, str(exc))
        return None
