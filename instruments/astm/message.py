"""A received E1394 message as its hierarchy: H > P > O > R, comments attached to their parent.

LIS2-A2 6.3: records nest header > patient > order > result; C (comment) and M (manufacturer)
records may follow any record and belong to it; Q (request) records follow the header; L ends the
message. Sequence numbers (field 2) start at 1 under each new parent (LIS2-A2 6.6.1).

Analysers bend these rules (an O without a P, numbering that never restarts), so grouping is
lenient: what does not fit is still placed (under a parent of None) and described in `problems`;
nothing is dropped and nothing is rejected here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from instruments.astm.records import (
    CommentRecord,
    HeaderRecord,
    ManufacturerRecord,
    OrderRecord,
    PatientRecord,
    QueryRecord,
    Record,
    ResultRecord,
    TerminatorRecord,
)


@dataclass(slots=True, kw_only=True)
class ResultGroup:
    result: ResultRecord
    comments: list[Record] = field(default_factory=list)  # C and M records after the R


@dataclass(slots=True, kw_only=True)
class OrderGroup:
    order: OrderRecord | None  # None: results arrived without an O record before them
    comments: list[Record] = field(default_factory=list)
    results: list[ResultGroup] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class PatientGroup:
    patient: PatientRecord | None  # None: orders arrived without a P record before them
    comments: list[Record] = field(default_factory=list)
    orders: list[OrderGroup] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class Message:
    records: list[Record]
    header: HeaderRecord | None = None
    header_comments: list[Record] = field(default_factory=list)
    patients: list[PatientGroup] = field(default_factory=list)
    queries: list[QueryRecord] = field(default_factory=list)
    other_records: list[Record] = field(default_factory=list)  # S and unknown types
    terminator: TerminatorRecord | None = None
    problems: list[str] = field(default_factory=list)

    @classmethod
    def from_records(cls, records: Iterable[Record]) -> Message:
        return _Grouper(list(records)).group()

    def orders(self) -> list[OrderGroup]:
        return [order for patient in self.patients for order in patient.orders]

    def results(self) -> list[tuple[OrderRecord | None, ResultRecord]]:
        """Every result with the order it belongs to."""
        return [(order.order, result.result) for order in self.orders() for result in order.results]


class _Grouper:
    def __init__(self, records: list[Record]) -> None:
        self.message = Message(records=records)
        self.patient: PatientGroup | None = None
        self.order: OrderGroup | None = None
        self.comment_target: list[Record] = self.message.header_comments
        # Expected next sequence number per level; reset when a new parent arrives.
        self.expected: dict[str, int] = {}

    def group(self) -> Message:
        message = self.message
        for position, record in enumerate(message.records, start=1):
            if message.terminator is not None:
                self.problem(position, record, "comes after the L record")
            if isinstance(record, HeaderRecord):
                self.header(position, record)
            elif isinstance(record, PatientRecord):
                self.check(position, record, "P")
                self.patient = PatientGroup(patient=record)
                message.patients.append(self.patient)
                self.order = None
                self.comment_target = self.patient.comments
                self.reset("O", "C")
            elif isinstance(record, OrderRecord):
                self.check(position, record, "O")
                self.order = OrderGroup(order=record)
                self.current_patient(position, record).orders.append(self.order)
                self.comment_target = self.order.comments
                self.reset("R", "C")
            elif isinstance(record, ResultRecord):
                self.check(position, record, "R")
                group = ResultGroup(result=record)
                self.current_order(position, record).results.append(group)
                self.comment_target = group.comments
                self.reset("C")
            elif isinstance(record, CommentRecord | ManufacturerRecord):
                if isinstance(record, CommentRecord):
                    self.check(position, record, "C")
                self.comment_target.append(record)
            elif isinstance(record, QueryRecord):
                self.check(position, record, "Q")
                message.queries.append(record)
                self.comment_target = message.other_records
                self.reset("C")
            elif isinstance(record, TerminatorRecord):
                message.terminator = record
            else:
                message.other_records.append(record)
        if message.header is None:
            message.problems.append("the message has no H record")
        if message.terminator is None:
            message.problems.append("the message has no L record")
        return message

    def header(self, position: int, record: HeaderRecord) -> None:
        if self.message.header is not None:
            self.problem(position, record, "is a second H record")
        else:
            self.message.header = record
        if position != 1:
            self.problem(position, record, "is not the first record")
        self.patient = None
        self.order = None
        self.comment_target = self.message.header_comments
        self.expected = {}

    def current_patient(self, position: int, record: Record) -> PatientGroup:
        if self.patient is None:
            self.problem(position, record, "has no P record before it")
            self.patient = PatientGroup(patient=None)
            self.message.patients.append(self.patient)
        return self.patient

    def current_order(self, position: int, record: Record) -> OrderGroup:
        if self.order is None:
            self.problem(position, record, "has no O record before it")
            self.order = OrderGroup(order=None)
            self.current_patient(position, record).orders.append(self.order)
        return self.order

    def reset(self, *levels: str) -> None:
        for level in levels:
            self.expected[level] = 1

    def check(self, position: int, record: Record, level: str) -> None:
        expected = self.expected.get(level, 1)
        actual = record.sequence
        if actual != expected:
            self.problem(position, record, f"has sequence number {actual}, expected {expected}")
        self.expected[level] = (actual if actual is not None else expected) + 1

    def problem(self, position: int, record: Record, text: str) -> None:
        self.message.problems.append(f"record {position} ({record.type_code}) {text}")
