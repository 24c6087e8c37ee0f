"""Values of an inbound message checked against the columns that will store them.

A patient name longer than `patient.family_name` holds, or an order number longer than
`lab_order.placer_order_number`, used to reach the database and fail there: the transaction
failed, no ACK was sent, and the sender resent the same message for ever. Here every value a
handler is about to write is measured first against the length of the column it goes to
(read from the table definitions in `lab.tables`, so there is no second list of limits to keep
in step), and a value that does not fit is refused with an ERR that names segment, occurrence,
field and component. Nothing is written for such a message.

The problems name where a value is and how long it may be, never the value itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import InstrumentedAttribute

from lab.hl7.codec.er7 import Message, Segment
from lab.hl7.codec.errors import ErrorCode, Problem
from lab.hl7.codec.types import (
    InboundContent,
    OrderMessage,
    Patient,
    PatientIdentifier,
    PatientMerge,
    PatientUpdate,
    PersonName,
)
from lab.tables import Hl7Message, Order
from lab.tables import Patient as StoredPatient
from lab.tables import PatientIdentifier as StoredIdentifier


def column_length(column: InstrumentedAttribute[str] | InstrumentedAttribute[str | None]) -> int:
    """The declared length of a string column (`String(200)` -> 200); 0 for unbounded text."""
    length = getattr(column.property.columns[0].type, "length", None)
    return int(length) if length else 0


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a value sits in the message: segment, its occurrence, field, component."""

    segment: str
    sequence: int
    position: int
    component: int | None = None
    repetition: int | None = None


def _too_long(
    value: str,
    column: InstrumentedAttribute[str] | InstrumentedAttribute[str | None],
    where: _Place,
    what: str,
) -> Problem | None:
    limit = column_length(column)
    if not limit or len(value) <= limit:
        return None
    return Problem(
        segment_id=where.segment,
        segment_sequence=where.sequence,
        field_position=where.position,
        component=where.component,
        repetition=where.repetition,
        code=ErrorCode.DATA_TYPE_ERROR,
        message=f"{what} is {len(value)} characters long; the lab stores at most {limit}",
    )


def control_id_problem(message: Message) -> Problem | None:
    """MSH-10 longer than the message log's key: it could not tell two messages apart."""
    return _too_long(
        message.control_id, Hl7Message.control_id, _Place("MSH", 1, 10), "MSH-10 control ID"
    )


def identifier_authority(identifier: PatientIdentifier) -> str:
    """The authority the patients service stores for an identifier (see handlers)."""
    return identifier.assigning_authority or identifier.assigning_authority_oid


def _patient(
    patient: Patient, repetitions: list[int], *, segment: str = "PID", position: int = 3
) -> list[Problem | None]:
    found: list[Problem | None] = []
    for index, identifier in enumerate(patient.identifiers):
        repetition = repetitions[index] if index < len(repetitions) else None
        found.append(
            _too_long(
                identifier.id,
                StoredIdentifier.value,
                _Place(segment, 1, position, 1, repetition),
                f"{segment}-{position}.1 identifier",
            )
        )
        found.append(
            _too_long(
                identifier_authority(identifier),
                StoredIdentifier.authority,
                _Place(segment, 1, position, 4, repetition),
                f"{segment}-{position}.4 assigning authority",
            )
        )
    name = patient.name
    if isinstance(name, PersonName):
        if isinstance(name.family, str):
            found.append(
                _too_long(
                    name.family, StoredPatient.family_name, _Place("PID", 1, 5, 1), "family name"
                )
            )
        if isinstance(name.given, str):
            found.append(
                _too_long(
                    name.given, StoredPatient.given_name, _Place("PID", 1, 5, 2), "given name"
                )
            )
    return found


def _segment_of(message: Message, name: str, sequence: int) -> Segment | None:
    for segment in message.segments_named(name):
        if segment.sequence == sequence:
            return segment
    return None


def _orders(
    message: Message,
    content: OrderMessage,
    locations: list[tuple[int, int | None]],
    clinicians: list[str],
) -> list[Problem | None]:
    found: list[Problem | None] = []
    for index, test in enumerate(content.tests):
        orc, obr = locations[index] if index < len(locations) else (1, None)
        # The placer number is OBR-2 when the OBR has one, else ORC-2 (codec.inbound).
        segment, sequence = "ORC", orc
        if obr is not None:
            found_obr = _segment_of(message, "OBR", obr)
            if found_obr is not None and found_obr.component(2, 1):
                segment, sequence = "OBR", obr
        placer = test.placer_order_number
        found.append(
            _too_long(
                placer.id,
                Order.placer_order_number,
                _Place(segment, sequence, 2, 1),
                "placer order number",
            )
        )
        found.append(
            _too_long(
                placer.namespace,
                Order.placer_namespace,
                _Place(segment, sequence, 2, 2),
                "placer order number namespace",
            )
        )
        if index < len(clinicians):
            found.append(
                _too_long(
                    clinicians[index],
                    Order.ordering_clinician,
                    _Place("ORC", orc, 12),
                    "ordering provider (ID, family and given name, authority)",
                )
            )
        pv1 = message.segment("PV1")
        where = _Place("PV1", 1, 3, 1) if pv1 is not None and pv1.component(3, 1) else None
        found.append(
            _too_long(
                test.ordering_location,
                Order.ordering_location,
                where or _Place("ORC", orc, 21),
                "ordering location",
            )
        )
    return found


def problems(
    message: Message,
    content: InboundContent,
    *,
    identifier_repetitions: list[int],
    test_locations: list[tuple[int, int | None]],
    clinicians: list[str],
) -> list[Problem]:
    """Every value of `content` that its column cannot hold; empty when all fit.

    `identifier_repetitions` is the PID-3 repetition of each identifier, `test_locations` the
    (ORC, OBR) occurrence of each ordered test and `clinicians` the ordering provider as the
    order will store it, per test (the handlers know all three).
    """
    found: list[Problem | None] = []
    if isinstance(content, OrderMessage):
        found += _patient(content.patient, identifier_repetitions)
        found += _orders(message, content, test_locations, clinicians)
    elif isinstance(content, PatientUpdate):
        found += _patient(content.patient, identifier_repetitions)
    elif isinstance(content, PatientMerge):
        found += _patient(content.surviving, identifier_repetitions)
    unique: dict[str, Problem] = {}
    for problem in found:
        if problem is not None:
            unique.setdefault(problem.location(), problem)
    return list(unique.values())
