"""What every analyser dialect shares: LIS2-A2 (CLSI, formerly ASTM E1394) records.

A profile knows how one analyser family writes test IDs, headers and comments, in both
directions: the host side (answering queries, downloading orders, reading results) and the
analyser side (the virtual analyser plays it). Vendor modules override only what differs and
cite the host interface document they follow. Profiles are pure: records in, records out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from instruments.astm.codec import Field
from instruments.astm.message import ResultGroup
from instruments.astm.records import (
    CommentRecord,
    HeaderRecord,
    OrderRecord,
    PatientRecord,
    QueryRecord,
    Record,
    ResultRecord,
    TerminatorRecord,
    UniversalTestId,
)

_FIELD_REF = re.compile(r"^([A-Z])-(\d{1,2})(?:\.(\d{1,2}))?$")


@dataclass(frozen=True, slots=True)
class FieldRef:
    """Where a value sits in a record: `O-3` (field 3, first component) or `O-4.3` (field 4,
    third component), first repeat; the way vendor manuals name fields."""

    record_type: str
    field: int
    component: int = 1

    @classmethod
    def parse(cls, text: str) -> FieldRef:
        match = _FIELD_REF.match(text.strip().upper())
        if match is None or int(match.group(2)) < 2 or int(match.group(3) or 1) < 1:
            raise ValueError(f"{text!r} is not a field like O-3 or O-4.3")
        return cls(match.group(1), int(match.group(2)), int(match.group(3) or 1))

    def read(self, record: Record) -> str:
        """The value there, padding removed; "" when the record has none."""
        if record.type_code.upper() != self.record_type:
            return ""
        components = record.field(self.field)[0] if record.field(self.field) else ()
        if len(components) < self.component:
            return ""
        return components[self.component - 1].strip()

    def __str__(self) -> str:
        suffix = f".{self.component}" if self.component != 1 else ""
        return f"{self.record_type}-{self.field}{suffix}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecimenOrder:
    """The tests the host wants run on one specimen, in the analyser's own test codes."""

    accession_number: str
    test_codes: tuple[str, ...]
    priority: str = "R"  # O-6: S stat, A asap, R routine
    collected_at: datetime | None = None
    instrument_specimen_id: Field | None = None  # O-4 as the analyser sent it, echoed back


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasuredResult:
    """One result as the virtual analyser reports it."""

    test_code: str  # the analyser's code
    value: str
    unit: str
    flags: tuple[str, ...] = ()
    completed_at: datetime | None = None
    status: str = "F"
    operator: str = ""


class Profile:
    """The generic LIS2-A2 dialect: `^^^code` test IDs, ISO 8859-1, P > O > R."""

    name: ClassVar[str] = "generic"
    title: ClassVar[str] = "Generic CLSI LIS2-A2 (ASTM E1394-97) analyser"
    document: ClassVar[str] = (
        "CLSI LIS2-A2, Specification for Transferring Information Between Clinical Laboratory "
        "Instruments and Information Systems, 2nd ed. (2004)"
    )
    default_encoding: ClassVar[str] = "latin-1"  # LIS2-A2 default character set (ISO 8859-1)
    version: ClassVar[str] = "LIS2-A2"
    # Where the specimen ID (our accession number, the barcode) is, in order of preference:
    # LIS2-A2 9.4.3 puts it in O-3 and 12.1.3 in the second component of Q-3. An instrument's
    # `specimen_fields` setting overrides this for a vendor that puts it elsewhere.
    specimen_fields: ClassVar[tuple[str, ...]] = ("O-3", "Q-3.2")

    # ------------------------------------------------------------------ test IDs

    def test_code(self, test: UniversalTestId) -> str:
        """The analyser's code inside a universal test ID (O-5, R-3, Q-5)."""
        return test.code

    def test_id(self, code: str) -> UniversalTestId:
        """A universal test ID as this analyser writes it (LIS2-A2 5.6.1: `^^^code`)."""
        return UniversalTestId.local(code)

    def dilution(self, test: UniversalTestId) -> str:
        """The analyser's rerun or dilution qualifier of a result's test ID; "" for none."""
        return test.dilution.strip()

    def specimen_id(self, record: Record, fields: Sequence[FieldRef] | None = None) -> str:
        """The specimen ID an O or Q record names: the first of the fields that holds one."""
        refs = fields if fields is not None else [FieldRef.parse(f) for f in self.specimen_fields]
        return next((value for ref in refs if (value := ref.read(record))), "")

    # ------------------------------------------------------------------ host side

    def host_header(
        self, *, host_name: str, reply_to: HeaderRecord | None, now: datetime
    ) -> Record:
        receiver = reply_to.sender[0] if reply_to is not None and reply_to.sender else None
        return HeaderRecord.create(
            sender=host_name, receiver=receiver, version=self.version, timestamp=now
        )

    def download_header(self, *, host_name: str, now: datetime) -> Record:
        return self.host_header(host_name=host_name, reply_to=None, now=now)

    def order_record(self, order: SpecimenOrder, *, sequence: int, query_reply: bool) -> Record:
        """O record for the tests to run. LIS2-A2 9.4.26: report type `Q` answers a query,
        `O` is a plain order; O-12 `N` (new) for a download, `A` (add) is not used."""
        return OrderRecord.create(
            sequence=sequence,
            specimen_id=order.accession_number,
            instrument_specimen_id=order.instrument_specimen_id,
            tests=[self.test_id(code) for code in order.test_codes],
            priority=order.priority,
            collected_at=order.collected_at,
            action_code="N",
            report_type="Q" if query_reply else "O",
        )

    def orders_message(
        self,
        orders: Sequence[SpecimenOrder],
        *,
        host_name: str,
        reply_to: HeaderRecord | None,
        now: datetime,
    ) -> list[Record]:
        """H, then P and O per specimen, then L: a query answer or an order download."""
        query_reply = reply_to is not None
        if query_reply:
            records = [self.host_header(host_name=host_name, reply_to=reply_to, now=now)]
        else:
            records = [self.download_header(host_name=host_name, now=now)]
        for number, order in enumerate(orders, start=1):
            records.append(PatientRecord.create(sequence=number))
            records.append(self.order_record(order, sequence=1, query_reply=query_reply))
        records.append(TerminatorRecord.create(code="F" if query_reply else "N"))
        return records

    def no_information(
        self, *, host_name: str, reply_to: HeaderRecord | None, now: datetime
    ) -> list[Record]:
        """LIS2-A2 13.1.3: L-3 `I`, no information available for the query."""
        return [
            self.host_header(host_name=host_name, reply_to=reply_to, now=now),
            TerminatorRecord.create(code="I"),
        ]

    def is_qc_message(self, header: HeaderRecord | None) -> bool:
        """H-12 processing ID `Q`: the message carries quality control results (LIS2-A2 7.1.12)."""
        return header is not None and header.processing_id.upper() == "Q"

    def is_qc_order(self, order: OrderRecord | None) -> bool:
        """O-12 action code `Q`: control specimen (LIS2-A2 9.4.12)."""
        return order is not None and order.action_code.upper() == "Q"

    def instrument_flags(self, group: ResultGroup) -> str:
        """The analyser's own flags of a result: R-7, repeats joined by commas."""
        return ",".join(group.result.abnormal_flags)

    def result_comment(self, group: ResultGroup) -> str:
        """Text of C records after the R (LIS2-A2 11: a comment belongs to the record before)."""
        texts = [
            " ".join(part for part in record.comment_text if part)
            for record in group.comments
            if isinstance(record, CommentRecord)
        ]
        return "; ".join(text for text in texts if text)

    # ------------------------------------------------------------------ analyser side

    def analyser_header(self, *, name: str, purpose: str, now: datetime) -> Record:
        """H record the analyser opens a message with; `purpose` is `query` or `results`."""
        return HeaderRecord.create(sender=(name, "1"), version=self.version, timestamp=now)

    def query_message(self, accession_number: str, *, name: str, now: datetime) -> list[Record]:
        """LIS2-A2 12: `Q|1|^SPECIMEN||ALL||||||||O` asks for the specimen's orders."""
        return [
            self.analyser_header(name=name, purpose="query", now=now),
            QueryRecord.create(specimen_id=accession_number),
            TerminatorRecord.create(),
        ]

    def results_message(
        self,
        order: SpecimenOrder,
        results: Sequence[MeasuredResult],
        *,
        name: str,
        now: datetime,
        control: bool = False,
    ) -> list[Record]:
        records: list[Record] = [
            self.analyser_header(name=name, purpose="control" if control else "results", now=now),
            PatientRecord.create(),
            OrderRecord.create(
                specimen_id=order.accession_number,
                instrument_specimen_id=order.instrument_specimen_id,
                tests=[self.test_id(r.test_code) for r in results],
                priority=order.priority,
                action_code="Q" if control else None,
                report_type="F",
            ),
        ]
        for number, result in enumerate(results, start=1):
            records.extend(self.result_records(result, sequence=number, name=name))
        records.append(TerminatorRecord.create())
        return records

    def result_records(self, result: MeasuredResult, *, sequence: int, name: str) -> list[Record]:
        return [
            ResultRecord.create(
                sequence=sequence,
                test=self.test_id(result.test_code),
                value=result.value,
                units=result.unit,
                abnormal_flags=result.flags,
                status=result.status,
                operator=result.operator or None,
                completed_at=result.completed_at,
                instrument=name,
            )
        ]

    def order_tests(self, order: OrderRecord) -> tuple[str, ...]:
        """The analyser-side reading of a host's O record: which of its tests to run."""
        return tuple(self.test_code(test) for test in order.tests)
