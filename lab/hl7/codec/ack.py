"""Acknowledgements for inbound messages (HL7 v2.5.1 section 2.9), built without I/O.

Original mode (MSH-15 and MSH-16 both empty): one ACK, MSA-1 AA / AE / AR, sent after the
content is committed. Enhanced mode (either one valued, table 0155 AL/NE/ER/SU): a commit ACK
(CA / CE / CR) once the message is safely stored, as MSH-15 asks, and later a separate
application ACK (AA / AE / AR) as MSH-16 asks. In enhanced mode an empty MSH-15 or MSH-16 is
read as NE: the sender named the other one and did not ask for this one.

In enhanced mode, the application acknowledgement of an order is the order response IHE LTW
asks for: ORL^O22 for OML^O21 (with the order status and our numbers), ORR^O02 for the legacy
ORM^O01. Original mode keeps the generic ACK, as the contract promises.

Every ACK: MSH with sender and receiver swapped (MSH-3/4 <-> MSH-5/6), MSH-9 `ACK^<trigger>^ACK`,
the inbound MSH-11 processing ID, MSH-12 version and MSH-18 character set, and its own MSH-10;
MSA-2 echoes the inbound MSH-10; one ERR per problem in v2.5 form (ERR-2 location, ERR-3 table
0357 code, ERR-4 severity, ERR-8 user message).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from lab.hl7.codec.er7 import Field, FieldValue, Message, Repeated, build_message
from lab.hl7.codec.errors import ErrorCode, Problem, Severity
from lab.hl7.codec.timestamps import format_timestamp


class AckCode(Enum):
    """MSA-1, HL7 table 0008."""

    APPLICATION_ACCEPT = "AA"
    APPLICATION_ERROR = "AE"
    APPLICATION_REJECT = "AR"
    COMMIT_ACCEPT = "CA"
    COMMIT_ERROR = "CE"
    COMMIT_REJECT = "CR"

    @property
    def is_success(self) -> bool:
        return self in (AckCode.APPLICATION_ACCEPT, AckCode.COMMIT_ACCEPT)


class AckCondition(Enum):
    """MSH-15 / MSH-16, HL7 table 0155."""

    ALWAYS = "AL"
    NEVER = "NE"
    ERROR_ONLY = "ER"
    SUCCESS_ONLY = "SU"

    def wants(self, code: AckCode) -> bool:
        if self is AckCondition.ALWAYS:
            return True
        if self is AckCondition.NEVER:
            return False
        return code.is_success == (self is AckCondition.SUCCESS_ONLY)


class Outcome(Enum):
    """What became of an inbound message; the ACK code follows from it and the mode."""

    ACCEPTED = "accepted"
    ERROR = "error"
    """Processing failed (a bad field, an unknown patient): AE / CE."""
    REJECTED = "rejected"
    """The message is of a kind we do not take (type, event, version, processing ID): AR / CR."""


_APPLICATION_CODES = {
    Outcome.ACCEPTED: AckCode.APPLICATION_ACCEPT,
    Outcome.ERROR: AckCode.APPLICATION_ERROR,
    Outcome.REJECTED: AckCode.APPLICATION_REJECT,
}
_COMMIT_CODES = {
    Outcome.ACCEPTED: AckCode.COMMIT_ACCEPT,
    Outcome.ERROR: AckCode.COMMIT_ERROR,
    Outcome.REJECTED: AckCode.COMMIT_REJECT,
}
_REJECTING_CODES = frozenset(
    {
        ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
        ErrorCode.UNSUPPORTED_EVENT_CODE,
        ErrorCode.UNSUPPORTED_PROCESSING_ID,
        ErrorCode.UNSUPPORTED_VERSION_ID,
    }
)


def outcome_of(problems: Iterable[Problem]) -> Outcome:
    """AR for a message we do not accept at all, AE for one we could not process, else AA."""
    errors = [problem for problem in problems if problem.severity is Severity.ERROR]
    if any(problem.code in _REJECTING_CODES for problem in errors):
        return Outcome.REJECTED
    return Outcome.ERROR if errors else Outcome.ACCEPTED


@dataclass(frozen=True, slots=True, kw_only=True)
class AckRequest:
    """The acknowledgements an inbound message asked for (MSH-15, MSH-16)."""

    enhanced: bool
    accept: AckCondition
    application: AckCondition

    def commit_code(self, outcome: Outcome) -> AckCode | None:
        """The commit ACK to send once the message is stored, or None."""
        if not self.enhanced:
            return None
        code = _COMMIT_CODES[outcome]
        return code if self.accept.wants(code) else None

    def application_code(self, outcome: Outcome) -> AckCode | None:
        """The application ACK to send once processed (the only one in original mode)."""
        code = _APPLICATION_CODES[outcome]
        if not self.enhanced:
            return code
        return code if self.application.wants(code) else None


def _condition(text: str) -> AckCondition:
    try:
        return AckCondition(text)
    except ValueError:
        return AckCondition.ALWAYS  # an unknown condition: answering is the safe side


def requested_acknowledgements(message: Message) -> AckRequest:
    msh = message.header
    accept, application = msh.text(15), msh.text(16)
    if not accept and not application:
        return AckRequest(
            enhanced=False, accept=AckCondition.NEVER, application=AckCondition.ALWAYS
        )
    return AckRequest(
        enhanced=True,
        accept=_condition(accept) if accept else AckCondition.NEVER,
        application=_condition(application) if application else AckCondition.NEVER,
    )


def _copy(field: Field) -> FieldValue:
    """A field of the inbound message as a value for the ACK (HD, VID and such keep parts)."""
    return Repeated(tuple(tuple(tuple(sub) for sub in rep) for rep in field.tree()))


def _error_segment(problem: Problem) -> tuple[str, dict[int, FieldValue]]:
    location: list[str] = [problem.segment_id, str(problem.segment_sequence)]
    if problem.field_position is not None:
        location.append(str(problem.field_position))
        if problem.component is not None or problem.repetition is not None:
            location.append(str(problem.repetition or 1))  # ERL.4 field repetition
        if problem.component is not None:
            location.append(str(problem.component))  # ERL.5 component
    return (
        "ERR",
        {
            2: tuple(location),
            3: (str(int(problem.code)), problem.code.text, "HL70357"),
            4: problem.severity.value,
            8: problem.message,
        },
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderLine:
    """One ordered test in an order response (ORL^O22): ORC + OBR (+ SPM for its tube)."""

    control: str
    """ORC-1, table 0119: OK accepted, CR cancelled as requested."""
    status: str
    """ORC-5, table 0038: SC in process, scheduled; CA cancelled."""
    placer: tuple[str, str]
    """ORC-2/OBR-2: placer order number and namespace."""
    filler: tuple[str, str]
    """ORC-3/OBR-3: the lab's order number and namespace."""
    service: tuple[str, ...]
    """OBR-4 as CE components (LOINC, text, LN, local code, text, L)."""
    accession_number: str = ""
    """SPM-2 (filler assigned): the tube this test is done on, when there is one."""
    specimen_type: str = ""
    """SPM-4, table 0487."""


# The application acknowledgement of an order message when the sender asks for one (MSH-16):
# IHE LTW LAB-1 answers OML^O21 with ORL^O22; the legacy ORM^O01 is answered with ORR^O02.
ORDER_RESPONSES: dict[tuple[str, str], tuple[str, str, str]] = {
    ("OML", "O21"): ("ORL", "O22", "ORL_O22"),
    ("ORM", "O01"): ("ORR", "O02", "ORR_O02"),
}


def response_type(inbound: Message, code: AckCode) -> tuple[str, str, str] | None:
    """ORL^O22 / ORR^O02 for the application ACK of an order in enhanced mode, else None (the
    generic ACK: original mode, commit ACKs, other messages)."""
    if code in (AckCode.COMMIT_ACCEPT, AckCode.COMMIT_ERROR, AckCode.COMMIT_REJECT):
        return None
    if not requested_acknowledgements(inbound).enhanced:
        return None
    kind, trigger, _ = inbound.message_type
    return ORDER_RESPONSES.get((kind, trigger))


def _order_segments(
    inbound: Message, lines: Iterable[OrderLine], *, specimens: bool
) -> list[tuple[str, dict[int, FieldValue]]]:
    """The RESPONSE group: the inbound PID, then ORC and OBR per test, and in ORL_O22 the SPM
    of its tube (ORR_O02 has no specimen segment: its order detail is OBR alone)."""
    pid = inbound.segment("PID")
    lines = list(lines)
    if pid is None or not lines:
        return []
    segments: list[tuple[str, dict[int, FieldValue]]] = [
        ("PID", {1: "1", 3: _copy(pid.field(3)), 5: _copy(pid.field(5))})
    ]
    for number, line in enumerate(lines, start=1):
        segments.append(("ORC", {1: line.control, 2: line.placer, 3: line.filler, 5: line.status}))
        segments.append(("OBR", {1: str(number), 2: line.placer, 3: line.filler, 4: line.service}))
        if specimens and line.accession_number:
            segments.append(
                (
                    "SPM",
                    {
                        1: "1",
                        2: ("", (line.accession_number, line.filler[1])),
                        4: (line.specimen_type, "", "HL70487"),
                    },
                )
            )
    return segments


def build_ack(
    inbound: Message,
    *,
    code: AckCode,
    control_id: str,
    now: datetime,
    problems: Iterable[Problem] = (),
    text: str = "",
    orders: Iterable[OrderLine] = (),
) -> Message:
    """The acknowledgement (any mode, any code) for an inbound message; `text` goes to MSA-3.

    In enhanced mode the application acknowledgement of OML^O21 is ORL^O22 and that of
    ORM^O01 is ORR^O02 (`response_type`), else the generic ACK. An accepted ORL^O22 carries
    `orders` (ORC-1 OK/CR, ORC-5 order status, our filler number, the tube of each test); an
    accepted ORR^O02 the same order group without the tube (its structure has no SPM).
    """
    msh = inbound.header
    trigger = msh.component(9, 2)
    response = response_type(inbound, code)
    enhanced = requested_acknowledgements(inbound).enhanced
    header: dict[int, FieldValue] = {
        3: _copy(msh.field(5)),
        4: _copy(msh.field(6)),
        5: _copy(msh.field(3)),
        6: _copy(msh.field(4)),
        7: format_timestamp(now),
        9: response or ("ACK", trigger, "ACK"),
        10: control_id,
        11: _copy(msh.field(11)),
        12: _copy(msh.field(12)),
    }
    if enhanced:
        # An acknowledgement is never itself acknowledged (v2.5.1 section 2.9.3.2).
        header[15] = "NE"
        header[16] = "NE"
    if msh.wire(18):
        header[18] = _copy(msh.field(18))
    segments: list[tuple[str, dict[int, FieldValue]]] = [
        ("MSH", header),
        ("MSA", {1: code.value, 2: inbound.control_id, 3: text}),
    ]
    segments += [_error_segment(problem) for problem in problems]
    if response is not None and code is AckCode.APPLICATION_ACCEPT:
        segments += _order_segments(inbound, orders, specimens=response[0] == "ORL")
    return build_message(segments, delimiters=inbound.delimiters, default_charset=inbound.charset)
