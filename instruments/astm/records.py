"""ASTM E1394 (CLSI LIS2-A2) records as typed values; parse and build, no I/O.

Every record keeps all its fields (`Record.fields`, ASTM field n at index n-1, trailing empty
fields included), so nothing the analyser sent is lost and `build_record(parse_record(raw))`
gives `raw` back (for canonically escaped input), while `parse_record(build_record(r)) == r` for
any record. The typed classes add accessors named after the standard's fields (section 7 - 14 of
LIS2-A2) and `create` constructors that leave out trailing empty fields.

Characters: records travel as bytes in the instrument's character set (ISO 8859-1 unless its
profile says Windows-1252 or UTF-8); `encoding` is a per-instrument setting passed in here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from instruments.astm.codec import (
    DEFAULT_DELIMITERS,
    EMPTY_FIELD,
    Delimiters,
    Field,
    format_timestamp,
    parse_timestamp,
)
from instruments.astm.errors import RecordBuildError

DEFAULT_ENCODING = "latin-1"


@dataclass(frozen=True, slots=True)
class UniversalTestId:
    """A universal test ID (LIS2-A2 5.6.1): four components, vendors fill them differently.

    Kept verbatim so it can be echoed back: generic ``^^^HB``, Sysmex XN ``^^^^WBC^1`` (code in
    the 5th component, dilution in the 6th), cobas ``^^^685/`` (code, slash, dilution), Ortho
    VISION plain ``ABO`` (one component).
    """

    components: tuple[str, ...]

    @classmethod
    def local(cls, code: str) -> UniversalTestId:
        """``^^^code``: the manufacturer's or lab's local code in the 4th component."""
        return cls(("", "", "", code))

    @property
    def code(self) -> str:
        """The test code, whichever component the dialect puts it in."""
        parts = self.components
        if len(parts) > 3 and parts[3]:
            return parts[3].split("/", 1)[0]
        if len(parts) > 4 and parts[4]:
            return parts[4]
        return next((part for part in parts if part), "")

    @property
    def dilution(self) -> str:
        """The dilution or qualifier after the code (cobas ``685/2``, Sysmex ``^^^^WBC^1``)."""
        parts = self.components
        if len(parts) > 3 and parts[3]:
            return parts[3].partition("/")[2]
        if len(parts) > 5:
            return parts[5]
        return ""


FieldValue = str | Sequence[str] | Field | datetime | UniversalTestId | None


def to_field(value: FieldValue) -> Field:
    """A Python value as a field: text, components, a whole field, a timestamp or a test ID."""
    if value is None:
        return EMPTY_FIELD
    if isinstance(value, str):
        return ((value,),)
    if isinstance(value, datetime):
        return ((format_timestamp(value),),)
    if isinstance(value, UniversalTestId):
        return (value.components or ("",),)
    items = tuple(value)
    if not items:
        return EMPTY_FIELD
    if all(isinstance(item, tuple) for item in items):
        # already a Field; a repeat needs one component at least, or it would not round-trip
        return tuple(repeat or ("",) for repeat in items)  # type: ignore[misc]
    return (tuple(str(item) for item in items),)


def _first(field: Field) -> str:
    return field[0][0]


@dataclass(frozen=True, slots=True)
class Record:
    """Any record: `fields[n - 1]` is ASTM field n; field 1 is the record type."""

    fields: tuple[Field, ...]
    record_type: ClassVar[str] = ""

    def field(self, number: int) -> Field:
        """ASTM field `number` (1-based); an absent trailing field reads as empty."""
        if 0 < number <= len(self.fields):
            return self.fields[number - 1]
        return EMPTY_FIELD

    def text(self, number: int) -> str:
        """First component of the first repeat of field `number`."""
        return _first(self.field(number))

    def components(self, number: int) -> tuple[str, ...]:
        return self.field(number)[0]

    def timestamp(self, number: int) -> datetime | None:
        return parse_timestamp(self.text(number))

    @property
    def type_code(self) -> str:
        return _first(self.fields[0])

    @property
    def sequence(self) -> int | None:
        """Field 2, the sequence number (LIS2-A2 6.6.1); None if absent or not a number."""
        text = self.text(2).strip()
        return int(text) if text.isdigit() else None

    @classmethod
    def create_fields(cls, values: Mapping[int, FieldValue]) -> tuple[Field, ...]:
        """Fields from {ASTM field number: value}, record type first, no trailing empties."""
        last = max((n for n, v in values.items() if to_field(v) != EMPTY_FIELD), default=1)
        fields = [to_field(values.get(n)) for n in range(1, last + 1)]
        fields[0] = ((cls.record_type,),)
        return tuple(fields)

    def with_field(self, number: int, value: FieldValue) -> Record:
        """A copy with field `number` replaced (padding with empty fields as needed)."""
        fields = list(self.fields)
        fields.extend([EMPTY_FIELD] * (number - len(fields)))
        fields[number - 1] = to_field(value)
        return type(self)(tuple(fields))


@dataclass(frozen=True, slots=True)
class HeaderRecord(Record):
    """H: message header (LIS2-A2 section 7). Field 2 holds the delimiter definition verbatim."""

    delimiters: Delimiters = DEFAULT_DELIMITERS
    record_type: ClassVar[str] = "H"

    @classmethod
    def create(
        cls,
        *,
        delimiters: Delimiters = DEFAULT_DELIMITERS,
        message_control_id: str | None = None,
        sender: FieldValue = None,
        receiver: FieldValue = None,
        special_instructions: FieldValue = None,
        processing_id: str | None = "P",
        version: str | None = "LIS2-A2",
        timestamp: datetime | None = None,
    ) -> HeaderRecord:
        fields = list(
            cls.create_fields(
                {
                    2: "-",  # placeholder; replaced below so the delimiters are not escaped
                    3: message_control_id,
                    5: sender,
                    10: receiver,
                    11: special_instructions,
                    12: processing_id,
                    13: version,
                    14: timestamp,
                }
            )
        )
        fields[1] = ((delimiters.definition,),)
        return cls(tuple(fields), delimiters)

    def with_field(self, number: int, value: FieldValue) -> HeaderRecord:
        if number <= 2:
            raise RecordBuildError("H-1 and H-2 follow from the record type and delimiters")
        fields = list(self.fields)
        fields.extend([EMPTY_FIELD] * (number - len(fields)))
        fields[number - 1] = to_field(value)
        return HeaderRecord(tuple(fields), self.delimiters)

    @property
    def message_control_id(self) -> str:
        """H-3"""
        return self.text(3)

    @property
    def sender(self) -> tuple[str, ...]:
        """H-5 sender name or ID, components"""
        return self.components(5)

    @property
    def receiver(self) -> tuple[str, ...]:
        """H-10 receiver ID"""
        return self.components(10)

    @property
    def special_instructions(self) -> tuple[str, ...]:
        """H-11, e.g. cobas TSREQ^REAL / TSDWN^REPLY"""
        return self.components(11)

    @property
    def processing_id(self) -> str:
        """H-12: P, T, D or Q (QC)"""
        return self.text(12)

    @property
    def version(self) -> str:
        """H-13 version, e.g. LIS2-A2, E1394-97"""
        return self.text(13)

    @property
    def message_time(self) -> datetime | None:
        """H-14 date and time of the message."""
        return self.timestamp(14)


@dataclass(frozen=True, slots=True)
class PatientRecord(Record):
    """P: patient information (LIS2-A2 section 8)."""

    record_type: ClassVar[str] = "P"

    @classmethod
    def create(
        cls,
        *,
        sequence: int = 1,
        practice_patient_id: str | None = None,
        laboratory_patient_id: str | None = None,
        name: FieldValue = None,
        birthdate: datetime | None = None,
        sex: str | None = None,
    ) -> PatientRecord:
        values: dict[int, FieldValue] = {2: str(sequence), 3: practice_patient_id}
        values |= {4: laboratory_patient_id, 6: name, 9: sex}
        if birthdate is not None:
            values[8] = format_timestamp(birthdate, digits=8)
        return cls(cls.create_fields(values))

    @property
    def practice_patient_id(self) -> str:
        """P-3"""
        return self.text(3)

    @property
    def laboratory_patient_id(self) -> str:
        """P-4"""
        return self.text(4)

    @property
    def name(self) -> tuple[str, ...]:
        """P-6 last^first^middle..."""
        return self.components(6)

    @property
    def sex(self) -> str:
        """P-9 M, F or U"""
        return self.text(9)

    @property
    def birthdate(self) -> datetime | None:
        return self.timestamp(8)


@dataclass(frozen=True, slots=True)
class OrderRecord(Record):
    """O: test order (LIS2-A2 section 9)."""

    record_type: ClassVar[str] = "O"

    @classmethod
    def create(
        cls,
        *,
        sequence: int = 1,
        specimen_id: FieldValue = None,
        instrument_specimen_id: FieldValue = None,
        tests: Iterable[UniversalTestId] = (),
        priority: str | None = "R",
        requested_at: datetime | None = None,
        collected_at: datetime | None = None,
        action_code: str | None = None,
        specimen_descriptor: FieldValue = None,
        report_type: str | None = "O",
    ) -> OrderRecord:
        test_field = tuple(test.components for test in tests) or EMPTY_FIELD
        return cls(
            cls.create_fields(
                {
                    2: str(sequence),
                    3: specimen_id,
                    4: instrument_specimen_id,
                    5: test_field,
                    6: priority,
                    7: requested_at,
                    8: collected_at,
                    12: action_code,
                    16: specimen_descriptor,
                    26: report_type,
                }
            )
        )

    @property
    def specimen_id(self) -> str:
        """O-3, the specimen ID (our accession number), first component, padding removed."""
        return self.text(3).strip()

    @property
    def instrument_specimen_id(self) -> Field:
        """O-4 verbatim (cobas e411 ``seq^carrier^pos``), to be echoed back unchanged."""
        return self.field(4)

    @property
    def tests(self) -> tuple[UniversalTestId, ...]:
        """O-5, one universal test ID per repeat; empty repeats left out."""
        return tuple(UniversalTestId(r) for r in self.field(5) if any(r))

    @property
    def priority(self) -> str:
        """O-6: S stat, A asap, R routine"""
        return self.text(6)

    @property
    def action_code(self) -> str:
        """O-12: N, A, C, Q, X, ..."""
        return self.text(12)

    @property
    def specimen_descriptor(self) -> tuple[str, ...]:
        """O-16"""
        return self.components(16)

    @property
    def report_type(self) -> str:
        """O-26: O, F, Q, I, ..."""
        return self.text(26)

    @property
    def requested_at(self) -> datetime | None:
        return self.timestamp(7)

    @property
    def collected_at(self) -> datetime | None:
        return self.timestamp(8)


@dataclass(frozen=True, slots=True)
class ResultRecord(Record):
    """R: result (LIS2-A2 section 10)."""

    record_type: ClassVar[str] = "R"

    @classmethod
    def create(
        cls,
        *,
        sequence: int = 1,
        test: UniversalTestId,
        value: FieldValue,
        units: str | None = None,
        reference_range: str | None = None,
        abnormal_flags: Sequence[str] = (),
        status: str | None = "F",
        operator: FieldValue = None,
        started_at: datetime | None = None,
        completed_at: datetime | None = None,
        instrument: FieldValue = None,
    ) -> ResultRecord:
        flags: Field = tuple((flag,) for flag in abnormal_flags) or EMPTY_FIELD
        return cls(
            cls.create_fields(
                {
                    2: str(sequence),
                    3: test,
                    4: value,
                    5: units,
                    6: reference_range,
                    7: flags,
                    9: status,
                    11: operator,
                    12: started_at,
                    13: completed_at,
                    14: instrument,
                }
            )
        )

    @property
    def test(self) -> UniversalTestId:
        """R-3, the universal test ID."""
        return UniversalTestId(self.components(3))

    @property
    def value(self) -> str:
        """R-4 measurement value, first component"""
        return self.text(4)

    @property
    def units(self) -> str:
        """R-5 units"""
        return self.text(5)

    @property
    def reference_range(self) -> str:
        """R-6, e.g. 12.0 to 16.0"""
        return self.text(6)

    @property
    def status(self) -> str:
        """R-9: F final, C correction, P, X, ..."""
        return self.text(9)

    @property
    def operator(self) -> tuple[str, ...]:
        """R-11 operator^verifier"""
        return self.components(11)

    @property
    def instrument(self) -> tuple[str, ...]:
        """R-14 instrument (or module)"""
        return self.components(14)

    @property
    def abnormal_flags(self) -> tuple[str, ...]:
        """R-7: L H LL HH < > N A U D B W; several as repeats."""
        return tuple(repeat[0] for repeat in self.field(7) if repeat[0])

    @property
    def started_at(self) -> datetime | None:
        return self.timestamp(12)

    @property
    def completed_at(self) -> datetime | None:
        """R-13 date and time the test was completed."""
        return self.timestamp(13)


@dataclass(frozen=True, slots=True)
class CommentRecord(Record):
    """C: comment (LIS2-A2 section 11); belongs to the record before it."""

    record_type: ClassVar[str] = "C"

    @classmethod
    def create(
        cls, *, sequence: int = 1, source: str = "I", text: FieldValue, comment_type: str = "G"
    ) -> CommentRecord:
        return cls(cls.create_fields({2: str(sequence), 3: source, 4: text, 5: comment_type}))

    @property
    def source(self) -> str:
        """C-3: P practice, L lab, I instrument"""
        return self.text(3)

    @property
    def comment_text(self) -> tuple[str, ...]:
        """C-4, components"""
        return self.components(4)

    @property
    def comment_type(self) -> str:
        """C-5: G generic, T test name, ..."""
        return self.text(5)


@dataclass(frozen=True, slots=True)
class QueryRecord(Record):
    """Q: request information, the analyser's host query (LIS2-A2 section 12)."""

    record_type: ClassVar[str] = "Q"

    @classmethod
    def create(
        cls,
        *,
        sequence: int = 1,
        patient_id: str = "",
        specimen_id: str = "",
        tests: Iterable[UniversalTestId] | None = None,
        request_status: str = "O",
    ) -> QueryRecord:
        test_field = ((("ALL",),) if tests is None else tuple(t.components for t in tests)) or None
        return cls(
            cls.create_fields(
                {2: str(sequence), 3: (patient_id, specimen_id), 5: test_field, 13: request_status}
            )
        )

    @property
    def starting_range(self) -> tuple[str, ...]:
        """Q-3 patientID^specimenID^..."""
        return self.components(3)

    @property
    def ending_range(self) -> tuple[str, ...]:
        """Q-4"""
        return self.components(4)

    @property
    def request_status(self) -> str:
        """Q-13: O orders, A cancel, ..."""
        return self.text(13)

    @property
    def patient_id(self) -> str:
        return self.starting_range[0].strip()

    @property
    def specimen_id(self) -> str:
        """Q-3 second component: the specimen asked about (our accession number)."""
        parts = self.starting_range
        return parts[1].strip() if len(parts) > 1 else ""

    @property
    def all_tests(self) -> bool:
        return self.text(5).upper() == "ALL"

    @property
    def tests(self) -> tuple[UniversalTestId, ...]:
        """Q-5 test IDs; empty when the query asks for ALL."""
        if self.all_tests:
            return ()
        return tuple(UniversalTestId(r) for r in self.field(5) if any(r))


@dataclass(frozen=True, slots=True)
class TerminatorRecord(Record):
    """L: message terminator (LIS2-A2 section 13)."""

    record_type: ClassVar[str] = "L"

    @classmethod
    def create(cls, *, sequence: int = 1, code: str = "N") -> TerminatorRecord:
        return cls(cls.create_fields({2: str(sequence), 3: code}))

    @property
    def termination_code(self) -> str:
        """L-3: N normal, T, R, E, Q, I no information, F"""
        return self.text(3)


@dataclass(frozen=True, slots=True)
class ManufacturerRecord(Record):
    """M: manufacturer information (LIS2-A2 section 15), vendor defined after M-2."""

    record_type: ClassVar[str] = "M"


@dataclass(frozen=True, slots=True)
class ScientificRecord(Record):
    """S: scientific record (LIS2-A2 section 14)."""

    record_type: ClassVar[str] = "S"


@dataclass(frozen=True, slots=True)
class UnknownRecord(Record):
    """A record type this module does not know; kept whole."""
