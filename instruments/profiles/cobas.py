"""Roche cobas c 311 / e 411 (Hitachi-built) chemistry and immunology analysers.

Follows "cobas c 311 analyzer Host Interface Manual", Version 1.4 (Roche Diagnostics, July
2013), whose revision history says it was built from the cobas e 411 host communication
document (Version 1.0; its later revisions were not found). Points used here, as summarised in
docs/analysers.md:
- test IDs `^^^685/` (application code, `/`, dilution; manual part E, test order record);
- H-11 message type: `RSUPL^REAL` results upload, `TSREQ^REAL` query, answered `TSDWN^REPLY`;
  `TSDWN^BATCH` for orders pushed without a query (the batch download of the manual's
  communication trace; verify against the manual before relying on it);
- the query names the specimen as `^000004^40^0^5^^SAMPLE^NORMAL`; O-4 of the answer must echo
  what the analyser sent (sequence^carrier^position), which the host keeps verbatim;
- a C record with the result data flags follows every R (manual E-17, "comment record that
  follows the result record"), `0` meaning no flag; R-14 names the module (`P1`, `ISE1`);
- the e 411 cancels a query left unanswered for 15 s, so the answer must be quick.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from instruments.astm.message import ResultGroup
from instruments.astm.records import (
    CommentRecord,
    HeaderRecord,
    QueryRecord,
    Record,
    ResultRecord,
    TerminatorRecord,
    UniversalTestId,
)
from instruments.profiles.base import MeasuredResult, Profile


class CobasProfile(Profile):
    name: ClassVar[str] = "cobas"
    title: ClassVar[str] = "Roche cobas c 311 / e 411"
    document: ClassVar[str] = (
        "Roche, cobas c 311 analyzer Host Interface Manual, Version 1.4 (July 2013); "
        "cobas e 411 host communication Version 1.0 (later revisions not found)"
    )
    version: ClassVar[str] = "1"  # H-13 as the cobas analysers send it

    def test_id(self, code: str) -> UniversalTestId:
        return UniversalTestId(("", "", "", f"{code}/"))

    def host_header(
        self, *, host_name: str, reply_to: HeaderRecord | None, now: datetime
    ) -> Record:
        receiver = reply_to.sender[0] if reply_to is not None and reply_to.sender else None
        return HeaderRecord.create(
            sender=host_name,
            receiver=receiver,
            special_instructions=("TSDWN", "REPLY"),
            version=self.version,
            timestamp=now,
        )

    def download_header(self, *, host_name: str, now: datetime) -> Record:
        return HeaderRecord.create(
            sender=host_name,
            special_instructions=("TSDWN", "BATCH"),
            version=self.version,
            timestamp=now,
        )

    def instrument_flags(self, group: ResultGroup) -> str:
        flags = list(group.result.abnormal_flags)
        for record in group.comments:
            if isinstance(record, CommentRecord) and record.source.upper() == "I":
                text = "^".join(part for part in record.comment_text if part)
                if text and text != "0":  # 0: no result data flag
                    flags.append(text)
        return ",".join(flags)

    def result_comment(self, group: ResultGroup) -> str:
        return ""  # the C records after R carry flags, kept in instrument_flags

    def analyser_header(self, *, name: str, purpose: str, now: datetime) -> Record:
        kind = ("TSREQ", "REAL") if purpose == "query" else ("RSUPL", "REAL")
        return HeaderRecord.create(
            sender=(name, "1"),
            receiver="host",
            special_instructions=kind,
            processing_id="Q" if purpose == "control" else "P",
            version=self.version,
            timestamp=now,
        )

    def query_message(self, accession_number: str, *, name: str, now: datetime) -> list[Record]:
        # Q-3 as the e 411 writes it: ^specimen^sequence^carrier^position^^SAMPLE^NORMAL
        query = QueryRecord.create(specimen_id=accession_number).with_field(
            3, ("", accession_number, "1", "50001", "1", "", "SAMPLE", "NORMAL")
        )
        return [
            self.analyser_header(name=name, purpose="query", now=now),
            query,
            TerminatorRecord.create(),
        ]

    def result_records(self, result: MeasuredResult, *, sequence: int, name: str) -> list[Record]:
        record = ResultRecord.create(
            sequence=sequence,
            test=self.test_id(result.test_code),
            value=result.value,
            units=result.unit,
            abnormal_flags=result.flags,
            status=result.status,
            operator=result.operator or None,
            completed_at=result.completed_at,
            instrument="P1",
        )
        return [record, CommentRecord.create(text="0", comment_type="I")]
