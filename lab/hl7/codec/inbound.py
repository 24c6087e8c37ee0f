"""Inbound messages from the record mapped to plain values, with every problem for ERR.

Accepted (docs/hl7-interface.md, "Inbound"): `OML^O21` (IHE LTW LAB-1), `ORM^O01` (legacy, same
meaning), `ADT^A01/A04/A08/A31` (demographics) and `ADT^A40` (merge). The segment walk is our
own rather than hl7apy's grouping: real multi-test OML^O21 (one ORC+OBR group per test) fails
hl7apy's STRICT grouping (hl7apy issue #148), and some senders put several OBRs under one ORC,
which we accept leniently.

Not checked here: whether identifiers are valid (the patients service checks fødselsnummer),
whether test codes exist (the catalog), duplicates (the caller, by MSH-10 and sender).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Final
from zoneinfo import ZoneInfo

from lab.hl7.codec.er7 import NULL, Message, Segment
from lab.hl7.codec.errors import ErrorCode, Severity
from lab.hl7.codec.escapes import Null
from lab.hl7.codec.fields import (
    ProblemLog,
    coded,
    entity_id,
    identifiers,
    provider,
    timestamp,
    update_date,
    update_text,
)
from lab.hl7.codec.types import (
    InboundContent,
    InboundOutcome,
    MessageHeader,
    OrderControl,
    OrderedSpecimen,
    OrderedTest,
    OrderMessage,
    Patient,
    PatientMerge,
    PatientUpdate,
    PersonName,
    Priority,
    Sex,
)

OSLO: Final = ZoneInfo("Europe/Oslo")
ORDER_MESSAGES: Final = frozenset({("OML", "O21"), ("ORM", "O01")})
PATIENT_EVENTS: Final = frozenset({"A01", "A04", "A08", "A31"})
MERGE_EVENT: Final = "A40"
# ORM^O01 traffic is often v2.3/2.4; field positions used here are the same in those versions.
ACCEPTED_VERSIONS: Final = frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1"})


def map_inbound(message: Message, *, local_zone: tzinfo = OSLO) -> InboundOutcome:
    """Map one parsed inbound message. Times without an offset are read in `local_zone`."""
    log = ProblemLog()
    header = _header(message, log, local_zone)
    code, trigger, _ = message.message_type
    msh = message.header
    content: InboundContent | None = None
    version = msh.component(12, 1)
    if version not in ACCEPTED_VERSIONS:
        log.add(msh, 12, ErrorCode.UNSUPPORTED_VERSION_ID, f"HL7 version {version!r} not accepted")
    elif (code, trigger) in ORDER_MESSAGES:
        content = _order_message(message, header, log, local_zone)
    elif code == "ADT" and trigger in PATIENT_EVENTS:
        content = _patient_update(message, header, trigger, log)
    elif code == "ADT" and trigger == MERGE_EVENT:
        content = _patient_merge(message, header, log)
    elif code == "ADT":
        log.add(
            msh, 9, ErrorCode.UNSUPPORTED_EVENT_CODE, f"ADT^{trigger} is not handled", component=2
        )
    else:
        log.add(
            msh,
            9,
            ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
            f"{code}^{trigger} is not accepted (OML^O21, ORM^O01, ADT)",
            component=1,
        )
    problems = tuple(log.problems)
    return InboundOutcome(content=None if log.has_errors else content, problems=problems)


def _header(message: Message, log: ProblemLog, zone: tzinfo) -> MessageHeader:
    msh = message.header
    code, trigger, _ = message.message_type
    if not message.control_id:
        log.add(msh, 10, ErrorCode.REQUIRED_FIELD_MISSING, "MSH-10 message control ID is empty")
    return MessageHeader(
        sending_application=msh.component(3, 1),
        sending_facility=msh.component(4, 1),
        control_id=message.control_id,
        message_type=f"{code}^{trigger}",
        sent_at=timestamp(msh, 7, log, zone),
    )


# --- patients ------------------------------------------------------------------------------


def _patient(pid: Segment, log: ProblemLog) -> Patient:
    found = identifiers(pid.field(3))
    if not found:
        log.add(pid, 3, ErrorCode.REQUIRED_FIELD_MISSING, "PID-3 has no patient identifier")
    return Patient(
        identifiers=found,
        name=_name(pid),
        birth_date=update_date(pid, 7, log),
        sex=_sex(pid, log),
    )


def _name(pid: Segment) -> PersonName | Null | None:
    if pid.is_null(5):
        return NULL
    if not pid.wire(5):
        return None
    # XPN: family name is FN.1 (component 1, subcomponent 1), given name component 2.
    return PersonName(
        family=update_text(pid.value(5, 1, 1)),
        given=update_text(pid.value(5, 2)),
        middle=update_text(pid.value(5, 3)),
    )


def _sex(pid: Segment, log: ProblemLog) -> Sex | Null | None:
    leaf = pid.value(8)
    if leaf is NULL:
        return NULL
    if not leaf:
        return None
    try:
        return Sex(leaf)
    except ValueError:
        log.add(pid, 8, ErrorCode.TABLE_VALUE_NOT_FOUND, f"sex {leaf!r} is not in HL7 table 0001")
        return None


def _only_pid(message: Message, log: ProblemLog) -> Segment | None:
    pids = message.segments_named("PID")
    if not pids:
        log.add("PID", None, ErrorCode.SEGMENT_SEQUENCE_ERROR, "the message has no PID segment")
        return None
    if len(pids) > 1:
        log.add(pids[1], None, ErrorCode.SEGMENT_SEQUENCE_ERROR, "one patient per message")
    return pids[0]


def _patient_update(
    message: Message, header: MessageHeader, event: str, log: ProblemLog
) -> PatientUpdate | None:
    pid = _only_pid(message, log)
    if pid is None:
        return None
    return PatientUpdate(header=header, event=event, patient=_patient(pid, log))


def _patient_merge(message: Message, header: MessageHeader, log: ProblemLog) -> PatientMerge | None:
    # ADT_A39 allows several PID+MRG groups; the record sends one merge per message, and
    # taking only the first of several would silently drop merges, so more is refused.
    pid = _only_pid(message, log)
    mrgs = message.segments_named("MRG")
    if not mrgs:
        log.add("MRG", None, ErrorCode.SEGMENT_SEQUENCE_ERROR, "ADT^A40 without MRG segment")
        return None
    if len(mrgs) > 1:
        log.add(mrgs[1], None, ErrorCode.SEGMENT_SEQUENCE_ERROR, "one merge per message")
    merged = identifiers(mrgs[0].field(1))
    if not merged:
        log.add(mrgs[0], 1, ErrorCode.REQUIRED_FIELD_MISSING, "MRG-1 has no patient identifier")
    if pid is None:
        return None
    return PatientMerge(header=header, surviving=_patient(pid, log), merged_identifiers=merged)


# --- orders --------------------------------------------------------------------------------


@dataclass(slots=True)
class _OrderGroup:
    """One ORC and what follows it until the next ORC."""

    orc: Segment
    priority: Segment | None = None  # TQ1
    comments: list[str] = field(default_factory=list)
    requests: list[_Request] = field(default_factory=list)


@dataclass(slots=True)
class _Request:
    """One OBR and its NTE and SPM."""

    obr: Segment
    comments: list[str] = field(default_factory=list)
    specimen: Segment | None = None


def _note(nte: Segment) -> str:
    # NTE-3 is FT and may repeat; repetitions are lines of one comment.
    return "\n".join(repetition.text(1) for repetition in nte.field(3).repetitions())


def _order_message(
    message: Message, header: MessageHeader, log: ProblemLog, zone: tzinfo
) -> OrderMessage | None:
    pid = _only_pid(message, log)
    location = ""
    groups: list[_OrderGroup] = []
    for segment in message.segments[1:]:
        name = segment.name
        group = groups[-1] if groups else None
        request = group.requests[-1] if group and group.requests else None
        if name == "PV1":
            location = segment.component(3, 1)
        elif name == "ORC":
            groups.append(_OrderGroup(orc=segment))
        elif name == "OBR":
            if group is None:
                log.add(segment, None, ErrorCode.SEGMENT_SEQUENCE_ERROR, "OBR before any ORC")
            else:
                group.requests.append(_Request(obr=segment))
        elif name == "TQ1" and group is not None and request is None:
            group.priority = segment
        elif name == "NTE" and request is not None:
            request.comments.append(_note(segment))
        elif name == "NTE" and group is not None:
            group.comments.append(_note(segment))
        elif name == "SPM" and request is not None and request.specimen is None:
            request.specimen = segment
        # Other segments (PD1, NK1, IN1, DG1, OBX answers, Z-segments) carry nothing the lab
        # acts on.
    if not groups:
        log.add("ORC", None, ErrorCode.SEGMENT_SEQUENCE_ERROR, "the message has no ORC segment")
    patient = _patient(pid, log) if pid is not None else None
    tests: list[OrderedTest] = []
    for group in groups:
        tests.extend(_group_tests(group, location, log, zone))
    if patient is None:
        return None
    return OrderMessage(header=header, patient=patient, tests=tuple(tests))


def _control(orc: Segment, log: ProblemLog) -> OrderControl | None:
    value = orc.text(1)
    if not value:
        log.add(orc, 1, ErrorCode.REQUIRED_FIELD_MISSING, "ORC-1 order control is empty")
        return None
    try:
        return OrderControl(value)
    except ValueError:
        log.add(orc, 1, ErrorCode.TABLE_VALUE_NOT_FOUND, f"order control {value!r}: NW or CA only")
        return None


def _priority(group: _OrderGroup, obr: Segment | None, log: ProblemLog) -> Priority | None:
    # TQ1-9 in v2.5+; OBR-27.6 / ORC-7.6 (TQ, kept for backward compatibility) in older traffic.
    candidates = []
    if group.priority is not None:
        candidates.append((group.priority, 9, 1))
    if obr is not None:
        candidates.append((obr, 27, 6))
    candidates.append((group.orc, 7, 6))
    for segment, position, component in candidates:
        value = segment.component(position, component)
        if value:
            try:
                return Priority(value)
            except ValueError:
                log.add(
                    segment,
                    position,
                    ErrorCode.TABLE_VALUE_NOT_FOUND,
                    f"priority {value!r} is not S, A or R; read as routine",
                    component=component,
                    severity=Severity.WARNING,
                )
                return None
    return None


def _ordering_location(orc: Segment, pv1_location: str) -> str:
    if pv1_location:
        return pv1_location
    return orc.component(21, 10) or orc.component(21, 1)


def _group_tests(
    group: _OrderGroup, location: str, log: ProblemLog, zone: tzinfo
) -> list[OrderedTest]:
    orc = group.orc
    control = _control(orc, log)
    requests: list[_Request | None] = list(group.requests)
    if not requests:
        if control is not OrderControl.CANCEL:
            log.add(orc, None, ErrorCode.SEGMENT_SEQUENCE_ERROR, "ORC without OBR")
            return []
        requests = [None]  # a cancel may name the order by ORC-2 alone
    tests = []
    for request in requests:
        obr = request.obr if request else None
        placer = (entity_id(obr.field(2)) if obr else None) or entity_id(orc.field(2))
        if placer is None:
            log.add(
                orc, 2, ErrorCode.REQUIRED_FIELD_MISSING, "no placer order number (ORC-2/OBR-2)"
            )
        service = alternate = None
        if obr is not None:
            service = coded(obr.field(4))
            alternate = coded(obr.field(4), 4)
            if service is None and alternate is None:
                log.add(obr, 4, ErrorCode.REQUIRED_FIELD_MISSING, "OBR-4 names no test")
            service, alternate = service or alternate, alternate if service else None
        filler = (entity_id(obr.field(3)) if obr else None) or entity_id(orc.field(3))
        ordering_provider = provider(orc.field(12)) or (provider(obr.field(16)) if obr else None)
        specimen = _specimen(request.specimen, log, zone) if request else None
        collected_at = timestamp(obr, 7, log, zone) if obr else None
        if specimen is not None and specimen.collected_at is not None:
            collected_at = specimen.collected_at
        priority = _priority(group, obr, log)
        if control is None or placer is None:
            continue
        tests.append(
            OrderedTest(
                control=control,
                placer_order_number=placer,
                filler_order_number=filler,
                placer_group_number=entity_id(orc.field(4)),
                service=service,
                alternate_service=alternate,
                ordering_provider=ordering_provider,
                ordering_location=_ordering_location(orc, location),
                priority=priority,
                relevant_clinical_info=obr.text(13) if obr else "",
                comments=tuple(group.comments + (request.comments if request else [])),
                collected_at=collected_at,
                specimen=specimen,
            )
        )
    return tests


def _specimen(spm: Segment | None, log: ProblemLog, zone: tzinfo) -> OrderedSpecimen | None:
    if spm is None:
        return None
    collected: datetime | None = timestamp(spm, 17, log, zone)
    return OrderedSpecimen(
        specimen_id=spm.component(2, 1, 1),  # SPM-2 EIP: placer assigned identifier (EI)
        specimen_type=coded(spm.field(4)),
        collected_at=collected,
    )
