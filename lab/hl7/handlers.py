"""Handlers: inbound messages from the record translated into calls of the core services.

Thin on purpose (docs/architecture.md, rule 1): the rules live in `orders.service` and
`patients.service`; this module only turns mapped HL7 values into their requests and turns the
services' errors (`LabError` with field names such as `identifiers[1]` or `tests[0].code`)
back into ERR locations (`PID-3` repetition 2, `OBR[1]-4`), so the sender learns which segment
and field to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.catalog import service as catalog
from lab.errors import Conflict, FieldProblem, LabError, NotFound
from lab.hl7 import limits
from lab.hl7.codec.er7 import Message
from lab.hl7.codec.errors import ErrorCode, Problem
from lab.hl7.codec.escapes import NULL
from lab.hl7.codec.types import (
    InboundContent,
    OrderControl,
    OrderedTest,
    OrderMessage,
    Patient,
    PatientIdentifier,
    PatientMerge,
    PatientUpdate,
    PersonName,
    Sex,
)
from lab.orders import service as orders
from lab.patients import service as patients
from lab.patients.identifiers import IdentifierKind, kind_for
from lab.tables import Order, Priority
from lab.tables import Patient as StoredPatient

# HL7 table 0001 to the sexes the patients service keeps (F, M, O, U).
_SEX = {
    Sex.FEMALE: "F",
    Sex.MALE: "M",
    Sex.OTHER: "O",
    Sex.AMBIGUOUS: "O",
    Sex.UNKNOWN: "U",
    Sex.NOT_APPLICABLE: "U",
}
# HL7 priority codes (OBR-27.6 / TQ1-9: S stat, A asap, R routine) to the lab's.
_PRIORITY = {"S": Priority.STAT, "A": Priority.URGENT, "R": Priority.ROUTINE}
_PRIORITY_RANK = {Priority.ROUTINE: 0, Priority.URGENT: 1, Priority.STAT: 2}


def interface_actor(sending_application: str, *, via: str = "") -> Actor:
    """The record's interface as the actor of every change a message makes; `via` is the
    connection it came on (address, and the client certificate's subject with mutual TLS)."""
    name = f"hl7:{sending_application or 'unknown'}"[:64]
    return Actor(
        user_id=None, username=name, roles=frozenset({"interface"}), channel="hl7", via=via
    )


class MessageRefused(Exception):
    """The services refused the content; `problems` say where, for the ERR segments."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(problem) for problem in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True, kw_only=True)
class Handled:
    """What a processed message did, for the message log."""

    patient_id: int | None = None
    order_ids: tuple[int, ...] = ()
    summary: str = ""


def handle(session: Session, *, actor: Actor, message: Message, content: InboundContent) -> Handled:
    """Apply one mapped message; MessageRefused when a service refuses it, or when a value is
    longer than the column that would store it (checked before anything is written)."""
    too_long = limits.problems(
        message,
        content,
        identifier_repetitions=_identifier_repetitions(message),
        test_locations=_test_locations(message),
        clinicians=[_clinician(test) for test in content.tests]
        if isinstance(content, OrderMessage)
        else [],
    )
    if too_long:
        raise MessageRefused(too_long)
    if isinstance(content, OrderMessage):
        return _orders(session, actor=actor, message=message, content=content)
    if isinstance(content, PatientUpdate):
        return _patient_update(session, actor=actor, message=message, content=content)
    return _patient_merge(session, actor=actor, message=message, content=content)


# --- where a service's field names sit in the message -------------------------------------


@dataclass(slots=True)
class _Locations:
    """ERR locations for the field names the services use in FieldProblem."""

    identifier_repetitions: list[int] = field(default_factory=list)
    orc_sequence: int = 1
    obr_sequences: list[int | None] = field(default_factory=list)

    def problem(self, exc: LabError, name: str, message: str) -> Problem:
        code = _error_code(exc)
        if name.startswith("identifiers[") and name.endswith("]"):
            index = int(name[len("identifiers[") : -1])
            repetition = (
                self.identifier_repetitions[index]
                if index < len(self.identifier_repetitions)
                else None
            )
            return _at("PID", 1, 3, code, message, repetition=repetition)
        if name == "identifiers":
            return _at("PID", 1, 3, code, message)
        if name in ("family_name", "given_name"):
            return _at("PID", 1, 5, code, message)
        if name == "birth_date":
            return _at("PID", 1, 7, code, message)
        if name == "sex":
            return _at("PID", 1, 8, code, message)
        if name == "placer_order_number":
            return _at("ORC", self.orc_sequence, 2, code, message)
        if name.startswith("tests[") and "]" in name:
            index = int(name[len("tests[") : name.index("]")])
            sequence = self.obr_sequences[index] if index < len(self.obr_sequences) else None
            if sequence is not None:
                return _at("OBR", sequence, 4, code, message)
        if name in ("tests", "priority", "reason"):
            return _at("ORC", self.orc_sequence, None, code, message)
        return _at("ORC" if self.obr_sequences else "PID", 1, None, code, message)

    def refused(self, exc: LabError, *, default: Problem | None = None) -> MessageRefused:
        problems = [self.problem(exc, p.field, p.message) for p in exc.problems]
        if not problems:
            problems = [default or _at("MSH", 1, None, _error_code(exc), exc.message)]
        return MessageRefused(problems)


def _error_code(exc: LabError) -> ErrorCode:
    try:
        return ErrorCode(int(exc.hl7_error_code))
    except ValueError:
        return ErrorCode.APPLICATION_INTERNAL_ERROR


def _at(
    segment: str,
    sequence: int,
    position: int | None,
    code: ErrorCode,
    message: str,
    *,
    repetition: int | None = None,
) -> Problem:
    return Problem(
        segment_id=segment,
        segment_sequence=sequence,
        field_position=position,
        repetition=repetition,
        code=code,
        message=message,
    )


def _identifier_repetitions(message: Message, segment: str = "PID", position: int = 3) -> list[int]:
    """The PID-3 repetition (1-based) of each identifier `inbound.identifiers` kept."""
    found = message.segment(segment)
    if found is None:
        return []
    return [
        number
        for number, repetition in enumerate(found.field(position).repetitions(), start=1)
        if repetition.text(1)
    ]


def _test_locations(message: Message) -> list[tuple[int, int | None]]:
    """(ORC occurrence, OBR occurrence or None) of each ordered test, in message order.

    The same walk as `lab.hl7.codec.inbound`: each OBR belongs to the ORC before it, and an ORC
    without OBR (a cancel naming the order by ORC-2 alone) is one test without OBR.
    """
    locations: list[tuple[int, int | None]] = []
    current: tuple[int, list[int]] | None = None
    groups: list[tuple[int, list[int]]] = []
    for segment in message.segments[1:]:
        if segment.name == "ORC":
            current = (segment.sequence, [])
            groups.append(current)
        elif segment.name == "OBR" and current is not None:
            current[1].append(segment.sequence)
    for orc, obrs in groups:
        if obrs:
            locations.extend((orc, obr) for obr in obrs)
        else:
            locations.append((orc, None))
    return locations


# --- patients ----------------------------------------------------------------------------


def _identifier_input(identifier: PatientIdentifier) -> patients.IdentifierInput:
    authority = identifier.assigning_authority or identifier.assigning_authority_oid
    oid = identifier.assigning_authority_oid
    if oid and kind_for(oid, "") is not IdentifierKind.OTHER:
        authority = oid  # the registry OID says which national number it is
    return patients.IdentifierInput(
        value=identifier.id, authority=authority, type_code=identifier.identifier_type
    )


def _known_patient(
    session: Session, inputs: list[patients.IdentifierInput]
) -> StoredPatient | None:
    for index, ident in enumerate(inputs):
        checked = patients.check_identifier(ident, field=f"identifiers[{index}]")
        found = patients.find_by_identifier(session, checked.value, checked.authority)
        if found is not None:
            return found
    return None


def _demographics(
    patient: Patient, *, existing: StoredPatient | None = None
) -> patients.Demographics:
    """Demographics for the patients service. In an update, an empty field keeps the stored
    value and `""` deletes it (v2.5.1 section 2.5.3); a deleted family name is refused there."""
    name = patient.name
    family: str = ""
    given: str = ""
    if isinstance(name, PersonName):
        family = _updated(name.family, existing.family_name if existing else "")
        given = _updated(name.given, existing.given_name if existing else "")
    elif name is None and existing is not None:
        family, given = existing.family_name, existing.given_name
    sex: str | None = None
    if isinstance(patient.sex, Sex):
        sex = _SEX[patient.sex]
    elif patient.sex is NULL:
        sex = "U"
    birth_date = patient.birth_date if isinstance(patient.birth_date, date) else None
    return patients.Demographics(
        identifiers=[_identifier_input(identifier) for identifier in patient.identifiers],
        family_name=family,
        given_name=given,
        birth_date=birth_date,
        sex=sex,
    )


def _updated(value: str | object, stored: str) -> str:
    if isinstance(value, str):
        return value
    if value is NULL:
        return ""
    return stored


def _patient_update(
    session: Session, *, actor: Actor, message: Message, content: PatientUpdate
) -> Handled:
    where = _Locations(identifier_repetitions=_identifier_repetitions(message))
    try:
        inputs = [_identifier_input(identifier) for identifier in content.patient.identifiers]
        existing = _known_patient(session, inputs)
        stored = patients.upsert(
            session, actor=actor, data=_demographics(content.patient, existing=existing)
        )
    except LabError as exc:
        raise where.refused(exc, default=_at("PID", 1, 3, _error_code(exc), exc.message)) from exc
    return Handled(patient_id=stored.id, summary=f"patient {stored.id} ({content.event})")


def _patient_merge(
    session: Session, *, actor: Actor, message: Message, content: PatientMerge
) -> Handled:
    where = _Locations(identifier_repetitions=_identifier_repetitions(message))
    try:
        inputs = [_identifier_input(identifier) for identifier in content.surviving.identifiers]
        surviving = _known_patient(session, inputs)
        if surviving is None or isinstance(content.surviving.name, PersonName):
            surviving = patients.upsert(
                session, actor=actor, data=_demographics(content.surviving, existing=surviving)
            )
    except LabError as exc:
        raise where.refused(exc, default=_at("PID", 1, 3, _error_code(exc), exc.message)) from exc
    merge_where = _Locations(identifier_repetitions=_identifier_repetitions(message, "MRG", 1))
    try:
        merged = _known_patient(
            session, [_identifier_input(identifier) for identifier in content.merged_identifiers]
        )
    except LabError as exc:
        problems = [
            _at("MRG", 1, 1, _error_code(exc), p.message, repetition=_repetition(merge_where, p))
            for p in exc.problems
        ]
        raise MessageRefused(problems) from exc
    if merged is None or merged.id == surviving.id:
        # Unknown here, or merged already (a repeat): the lab holds nothing to move.
        return Handled(patient_id=surviving.id, summary="nothing to merge")
    try:
        patients.merge(
            session,
            actor=actor,
            surviving_patient_id=surviving.id,
            merged_patient_id=merged.id,
            reason=f"ADT^A40 {content.header.control_id} from {content.header.sending_application}",
        )
    except LabError as exc:
        raise MessageRefused([_at("MRG", 1, 1, _error_code(exc), exc.message)]) from exc
    return Handled(
        patient_id=surviving.id, summary=f"patient {merged.id} merged into {surviving.id}"
    )


def _repetition(where: _Locations, problem: FieldProblem) -> int | None:
    name = problem.field
    if name.startswith("identifiers["):
        index = int(name[len("identifiers[") : -1])
        if index < len(where.identifier_repetitions):
            return where.identifier_repetitions[index]
    return None


# --- orders ------------------------------------------------------------------------------


@dataclass(slots=True)
class _PlacerGroup:
    """The tests of one placer order number, as one order of the lab."""

    control: OrderControl
    orc_sequence: int
    tests: list[tuple[OrderedTest, int | None]] = field(default_factory=list)


def _orders(session: Session, *, actor: Actor, message: Message, content: OrderMessage) -> Handled:
    locations = _test_locations(message)
    groups: dict[tuple[str, str], _PlacerGroup] = {}
    for index, test in enumerate(content.tests):
        orc, obr = locations[index] if index < len(locations) else (1, None)
        key = (test.placer_order_number.id, test.placer_order_number.namespace)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _PlacerGroup(control=test.control, orc_sequence=orc)
        elif group.control is not test.control:
            raise MessageRefused(
                [
                    _at(
                        "ORC",
                        orc,
                        1,
                        ErrorCode.TABLE_VALUE_NOT_FOUND,
                        "one placer order number cannot be placed and cancelled in one message",
                    )
                ]
            )
        group.tests.append((test, obr))
    repetitions = _identifier_repetitions(message)
    order_ids: list[int] = []
    patient_id: int | None = None
    for group in groups.values():
        where = _Locations(
            identifier_repetitions=repetitions,
            orc_sequence=group.orc_sequence,
            obr_sequences=[obr for _, obr in group.tests],
        )
        if group.control is OrderControl.NEW:
            order = _place(session, actor=actor, content=content, group=group, where=where)
        else:
            order = _cancel(session, actor=actor, content=content, group=group, where=where)
        order_ids.append(order.id)
        patient_id = order.patient_id
    summary = ", ".join(f"order {order_id}" for order_id in order_ids)
    return Handled(patient_id=patient_id, order_ids=tuple(order_ids), summary=summary)


def _test_request(test: OrderedTest) -> orders.TestRequest:
    for coded in (test.service, test.alternate_service):
        if coded is not None and coded.code and coded.coding_system != "LN":
            return orders.TestRequest(code=coded.code, system=coded.coding_system)
    return orders.TestRequest(code=test.loinc or "", system="LN")


def _clinician(test: OrderedTest) -> str:
    person = test.ordering_provider
    if person is None:
        return ""
    # Kept as XCN components so the result report can name the same person (ORC-12).
    return "^".join((person.id, person.family, person.given, person.assigning_authority))


def _place(
    session: Session,
    *,
    actor: Actor,
    content: OrderMessage,
    group: _PlacerGroup,
    where: _Locations,
) -> Order:
    first = group.tests[0][0]
    priority = Priority.ROUTINE
    notes: list[str] = []
    for test, _ in group.tests:
        if test.priority is not None:
            candidate = _PRIORITY[test.priority.value]
            if _PRIORITY_RANK[candidate] > _PRIORITY_RANK[priority]:
                priority = candidate
        for note in (test.relevant_clinical_info, *test.comments):
            if note and note not in notes:
                notes.append(note)
    request = orders.OrderRequest(
        patient=_demographics(content.patient),
        placer_order_number=first.placer_order_number.id,
        placer_namespace=first.placer_order_number.namespace,
        tests=[_test_request(test) for test, _ in group.tests],
        priority=priority,
        ordering_clinician=_clinician(first),
        ordering_location=first.ordering_location,
        clinical_info="\n".join(notes),
        collected_at=first.collected_at,
        source="hl7",
    )
    try:
        return orders.place(session, actor=actor, request=request)
    except Conflict as exc:
        # A known placer number with a new MSH-10: the record sent the order twice.
        duplicate = _at(
            "ORC", group.orc_sequence, 2, ErrorCode.DUPLICATE_KEY_IDENTIFIER, exc.message
        )
        raise MessageRefused([duplicate]) from exc
    except LabError as exc:
        raise where.refused(exc) from exc


def _cancel(
    session: Session,
    *,
    actor: Actor,
    content: OrderMessage,
    group: _PlacerGroup,
    where: _Locations,
) -> Order:
    first = group.tests[0][0]
    placer = first.placer_order_number
    order = orders.find_by_placer(session, placer.id, placer.namespace)
    if order is None:
        raise MessageRefused(
            [
                _at(
                    "ORC",
                    group.orc_sequence,
                    2,
                    ErrorCode.UNKNOWN_KEY_IDENTIFIER,
                    f"no order with placer number {placer.id}",
                )
            ]
        )
    codes: list[str] | None = []
    for index, (test, _) in enumerate(group.tests):
        if test.service is None and test.alternate_service is None:
            codes = None  # ORC-2 alone: the whole order
            break
        wanted = _test_request(test)
        try:
            found, _panel = catalog.expand(session, wanted.code, wanted.system)
        except NotFound as exc:
            raise where.refused(
                NotFound(exc.message, problems=[FieldProblem(f"tests[{index}].code", exc.message)])
            ) from exc
        if codes is not None:
            codes.extend(lab_test.code for lab_test in found)
    try:
        orders.cancel_tests(
            session,
            actor=actor,
            filler=order.filler_order_number,
            codes=codes,
            reason=f"cancelled by the record ({content.header.message_type} "
            f"{content.header.control_id})",
            tell_record=False,  # the record asked for it; its answer is the ACK (or ORL)
        )
    except LabError as exc:
        raise where.refused(
            exc, default=_at("ORC", group.orc_sequence, 1, _error_code(exc), exc.message)
        ) from exc
    return order
