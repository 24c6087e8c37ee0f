"""Plain typed values that HL7 messages are mapped to and built from.

They belong to the HL7 layer alone: the services translate them into their own models. A field
typed `X | Null | None` comes from a patient update (ADT): None means the sender left it empty
("no change"), NULL that it sent `""` ("delete the stored value", v2.5.1 section 2.5.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum

from lab.hl7.codec.errors import Problem
from lab.hl7.codec.escapes import Null

# --- shared pieces -------------------------------------------------------------------------


class Sex(Enum):
    """HL7 table 0001 (PID-8) as in v2.5.1."""

    FEMALE = "F"
    MALE = "M"
    OTHER = "O"
    UNKNOWN = "U"
    AMBIGUOUS = "A"
    NOT_APPLICABLE = "N"


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientIdentifier:
    """One CX repetition of PID-3 / MRG-1: the ID, who issued it and what kind it is.

    Norwegian traffic: identifier type `FNR` (fødselsnummer), `DNR` (D-number), `HNR`
    (H-number) or a hospital's local `PI`; the authority is a namespace and/or an OID.
    """

    id: str
    assigning_authority: str = ""
    """CX-4.1, HD namespace ID."""
    assigning_authority_oid: str = ""
    """CX-4.2, HD universal ID (sent with universal ID type `ISO`)."""
    identifier_type: str = ""
    """CX-5, HL7 table 0203."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PersonName:
    """XPN family name (component 1.1) and given name (component 2); middle (component 3)."""

    family: str | Null | None = None
    given: str | Null | None = None
    middle: str | Null | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Patient:
    identifiers: tuple[PatientIdentifier, ...]
    name: PersonName | Null | None = None
    birth_date: date | Null | None = None
    sex: Sex | Null | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Provider:
    """An XCN: ordering provider (ORC-12 / OBR-16) or responsible observer (OBX-16)."""

    id: str
    family: str = ""
    given: str = ""
    assigning_authority: str = ""
    """XCN-9.1; Norwegian traffic uses HPR numbers (authority `HPR`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EntityId:
    """EI: an order number (ORC-2 placer, ORC-3 filler) with the system that issued it."""

    id: str
    namespace: str = ""
    universal_id: str = ""
    universal_id_type: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CodedValue:
    """One CE/CWE triplet: code, text, coding system (`LN` for LOINC, `L` or a local name)."""

    code: str
    text: str = ""
    coding_system: str = ""


# --- inbound orders (OML^O21, ORM^O01) -----------------------------------------------------


class OrderControl(Enum):
    """ORC-1 values we act on (HL7 table 0119)."""

    NEW = "NW"
    CANCEL = "CA"


class Priority(Enum):
    """TQ1-9 / OBR-27.6 priority (HL7 table 0485 subset the lab handles)."""

    STAT = "S"
    ASAP = "A"
    ROUTINE = "R"


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderedSpecimen:
    """SPM: what the record says will be (or was) collected."""

    specimen_id: str = ""
    """SPM-2.1 placer assigned specimen ID, when the record labels tubes itself."""
    specimen_type: CodedValue | None = None
    """SPM-4."""
    collected_at: datetime | None = None
    """SPM-17.1."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderedTest:
    """One ordered test: one ORC+OBR group (or one OBR of several under one ORC)."""

    control: OrderControl
    placer_order_number: EntityId
    filler_order_number: EntityId | None = None
    placer_group_number: EntityId | None = None
    """ORC-4: the requisition several tests belong to."""
    service: CodedValue | None = None
    """OBR-4 first triplet; None only for a cancel sent without OBR."""
    alternate_service: CodedValue | None = None
    """OBR-4.4-6."""
    ordering_provider: Provider | None = None
    ordering_location: str = ""
    """PV1-3.1 point of care, else ORC-21 (organization ID, else name)."""
    priority: Priority | None = None
    relevant_clinical_info: str = ""
    comments: tuple[str, ...] = ()
    collected_at: datetime | None = None
    """OBR-7, or SPM-17 when the specimen says so."""
    specimen: OrderedSpecimen | None = None

    @property
    def loinc(self) -> str | None:
        """The LOINC code of the test, if the record sent one (either triplet)."""
        for coded in (self.service, self.alternate_service):
            if coded is not None and coded.coding_system == "LN" and coded.code:
                return coded.code
        return None

    @property
    def local_code(self) -> str | None:
        """The local test code: a triplet coded `L` or with a local system name."""
        for coded in (self.service, self.alternate_service):
            if coded is not None and coded.coding_system != "LN" and coded.code:
                return coded.code
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageHeader:
    """What the ACK and duplicate detection need from MSH."""

    sending_application: str
    sending_facility: str
    control_id: str
    message_type: str
    """`OML^O21`, `ADT^A08` ..."""
    sent_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderMessage:
    header: MessageHeader
    patient: Patient
    tests: tuple[OrderedTest, ...]


# --- inbound patient administration (ADT) --------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientUpdate:
    """ADT^A01/A04/A08/A31: create or update the patient; NULL fields are to be deleted."""

    header: MessageHeader
    event: str
    patient: Patient


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientMerge:
    """ADT^A40: the patient identified by `merged_identifiers` (MRG-1) disappears into
    `surviving` (PID)."""

    header: MessageHeader
    surviving: Patient
    merged_identifiers: tuple[PatientIdentifier, ...]


InboundContent = OrderMessage | PatientUpdate | PatientMerge


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundOutcome:
    """The mapping of one inbound message.

    `content` is None when any problem has error severity: the caller answers AE/AR with the
    problems in ERR and keeps the message; warnings ride along with content.
    """

    content: InboundContent | None
    problems: tuple[Problem, ...] = ()


# --- outbound results (ORU^R01) ------------------------------------------------------------


class ValueType(Enum):
    """OBX-2 value types the lab reports (HL7 table 0125)."""

    NUMERIC = "NM"
    STRING = "ST"
    CODED = "CWE"


class ObservationStatus(Enum):
    """OBX-11, HL7 table 0085 (v2.5.1).

    F final; C a correction of a result already sent as final; X "results cannot be obtained
    for this observation" (a cancelled test, no OBX-5); D "deletes the OBX record" (withdraws
    a result sent earlier); W "post original as wrong" (sent for the wrong patient); P
    preliminary.
    """

    FINAL = "F"
    CORRECTED = "C"
    CANNOT_BE_OBTAINED = "X"
    DELETED = "D"
    WRONG = "W"
    PRELIMINARY = "P"


class ResultStatus(Enum):
    """OBR-25, HL7 table 0123: F final, C corrected, X order cancelled, P preliminary."""

    FINAL = "F"
    CORRECTED = "C"
    CANCELLED = "X"
    PRELIMINARY = "P"
    ORDER_RECEIVED = "O"  # order received; specimen not yet received
    IN_PROCESS = "I"  # no results available; specimen received, procedure incomplete


class AbnormalFlag(Enum):
    """OBX-8, HL7 table 0078: the flags the lab sets."""

    LOW = "L"
    HIGH = "H"
    CRITICAL_LOW = "LL"
    CRITICAL_HIGH = "HH"
    NORMAL = "N"
    ABNORMAL = "A"


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """One OBX: a result of one test."""

    loinc: CodedValue
    """OBX-3.1-3 (coding system `LN`)."""
    local: CodedValue
    """OBX-3.4-6: the lab's own code (`L` or the lab's system name)."""
    value_type: ValueType
    value: Decimal | str | CodedValue | None
    """None only with status X, D or W."""
    status: ObservationStatus
    unit: str = ""
    """UCUM code, sent in OBX-6 as `unit^unit^UCUM`."""
    reference_range: str = ""
    abnormal_flags: tuple[AbnormalFlag, ...] = ()
    observed_at: datetime | None = None
    """OBX-14: when the specimen was collected / the observation applies to."""
    responsible_observer: Provider | None = None
    """OBX-16: who verified the result."""
    analysed_at: datetime | None = None
    """OBX-19: when the analyser measured it."""
    comments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportedSpecimen:
    """SPM of a result report (v2.5.1 section 7.4.3): which specimen, and why it was rejected.

    `reject_reason` is an HL7 table 0490 code (SPM-21.1, coding system `HL70490`) or None when
    no code of that table says what happened; `reject_text` is the lab's own words, always sent
    (SPM-21.9 original text beside a code, SPM-21.2 without one).
    """

    accession_number: str
    filler_namespace: str
    specimen_type: str
    """HL7 table 0487 code (SPM-4), e.g. BLD, SER."""
    collected_at: datetime | None = None
    received_at: datetime | None = None
    rejected: bool = False
    reject_reason: str | None = None
    reject_text: str = ""


# HL7 v2.5.1 table 0490 "Specimen reject reason" (SPM-21), codes and the table's descriptions.
SPECIMEN_REJECT_REASONS_0490: dict[str, str] = {
    "EX": "Expired",
    "QS": "Quantity not sufficient",
    "RA": "Missing patient ID number",
    "RB": "Broken container",
    "RC": "Clotting",
    "RD": "Missing collection date",
    "RE": "Missing patient name",
    "RH": "Hemolysis",
    "RI": "Identification problem",
    "RM": "Labeling",
    "RN": "Contamination",
    "RP": "Missing phlebotomist ID",
    "RR": "Improper storage",
    "RS": "Name misspelling",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultReport:
    """One ORU^R01: the results of one order (or the part of it released now)."""

    control_id: str
    created_at: datetime
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    processing_id: str = "P"
    patient: Patient
    placer_order_number: EntityId
    filler_order_number: EntityId
    service: CodedValue
    alternate_service: CodedValue | None = None
    ordering_provider: Provider | None = None
    collected_at: datetime | None = None
    reported_at: datetime
    """OBR-22: when this status of the results was reached."""
    result_status: ResultStatus
    observations: tuple[Observation, ...] = ()
    comments: tuple[str, ...] = ()
    specimen: ReportedSpecimen | None = None
    """SPM after the observations: the specimen the report is about (a rejected one)."""
    specimen_action: str = ""
    """OBR-11, HL7 table 0065: `G` generated (reflex) order, `L` lab to obtain a specimen from
    the patient; empty for an ordinary report."""
