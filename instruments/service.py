"""The analyser side's own rules: the unmatched-result queue, QC results, order downloads.

Resolving an unmatched result records it through `lab.results.service.record` as the analyser
sent it (the one path for every result), with the person who assigned it in the audit trail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from instruments import messages
from instruments.config import InstrumentConfig
from instruments.profiles import SpecimenOrder
from lab import audit
from lab.audit import Actor
from lab.catalog import units
from lab.errors import Conflict, InvalidInput, NotFound
from lab.results import queries as result_queries
from lab.results import service as results
from lab.specimens import queries as work_lists
from lab.tables import (
    DownloadStatus,
    OrderDownload,
    QcResult,
    Specimen,
    UnmatchedResult,
    UnmatchedStatus,
)
from lab.timeutil import utcnow

OPEN, RESOLVED, DISCARDED = (
    UnmatchedStatus.OPEN,
    UnmatchedStatus.RESOLVED,
    UnmatchedStatus.DISCARDED,
)


def list_unmatched(
    session: Session,
    *,
    status: str | None = OPEN,
    instrument: str | None = None,
    limit: int = 200,
    after_id: int | None = None,
) -> list[UnmatchedResult]:
    """Oldest first; `after_id` pages on (keyset: ids grow with arrival)."""
    query = select(UnmatchedResult).order_by(UnmatchedResult.id)
    if status:
        query = query.where(UnmatchedResult.status == status)
    if instrument:
        query = query.where(UnmatchedResult.instrument == instrument)
    if after_id is not None:
        query = query.where(UnmatchedResult.id > after_id)
    return list(session.scalars(query.limit(limit)))


def note_read(session: Session, *, actor: Actor, rows: list[UnmatchedResult]) -> None:
    """A look at the queue is a look at patient data (values, and the whole messages with
    their P records): audited, one row per listing naming the rows shown."""
    if not rows:
        return
    audit.record(
        session,
        actor=actor,
        action="read.unmatched_result",
        entity_type="unmatched_result",
        entity_id=f"{rows[0].id}..{rows[-1].id}",
        detail=",".join(str(row.id) for row in rows),
    )


def count_unmatched(session: Session, *, status: str = OPEN, instrument: str | None = None) -> int:
    query = select(func.count()).select_from(UnmatchedResult)
    query = query.where(UnmatchedResult.status == status)
    if instrument:
        query = query.where(UnmatchedResult.instrument == instrument)
    return session.scalar(query) or 0


def open_unmatched_counts(session: Session) -> dict[str, int]:
    """Per analyser, how many of its results wait for a person's decision."""
    query = (
        select(UnmatchedResult.instrument, func.count())
        .where(UnmatchedResult.status == OPEN)
        .group_by(UnmatchedResult.instrument)
    )
    return {name: count for name, count in session.execute(query).tuples()}


def get_unmatched(session: Session, unmatched_id: int) -> UnmatchedResult:
    row = session.get(UnmatchedResult, unmatched_id)
    if row is None:
        raise NotFound(
            f"no unmatched result {unmatched_id}",
            code="unmatched_unknown",
            params={"id": unmatched_id},
        )
    return row


def _open(session: Session, unmatched_id: int) -> UnmatchedResult:
    row = session.get(UnmatchedResult, unmatched_id, with_for_update=True)
    if row is None:
        raise NotFound(
            f"no unmatched result {unmatched_id}",
            code="unmatched_unknown",
            params={"id": unmatched_id},
        )
    if row.status != OPEN:
        raise Conflict(
            f"unmatched result {unmatched_id} was {row.status} by {row.handled_by}",
            code="unmatched_handled",
            params={"by": row.handled_by or ""},
        )
    return row


def resolve(
    session: Session,
    *,
    actor: Actor,
    unmatched_id: int,
    accession_number: str,
    test_code: str,
    note: str = "",
    unit: str | None = None,
) -> results.Outcome:
    """Assign the result to a specimen and test, and record it as the analyser sent it.

    Its unit is compared with the catalog's as a UCUM unit and converted like any analyser
    result (the original value and unit kept on the measurement). `unit` is for a result whose
    unit the analyser wrote in no UCUM (`x10^3/uL`): the person says which UCUM unit it is,
    and the value is read in it; what the analyser sent stays the original.
    """
    row = _open(session, unmatched_id)
    if not test_code.strip():
        raise InvalidInput.field("test_code", "name the lab's test code", code="test_code_missing")
    code = test_code.strip().upper()
    read_as = (unit or "").strip() or row.unit
    reading = messages.in_catalog_unit(session, test_code=code, value=row.value, unit=read_as)
    if isinstance(reading, units.NotConvertible):
        raise InvalidInput.field("unit" if unit else "test_code", reading.reason)
    sent_unit = row.unit.strip()
    original_unit = reading.original_unit
    if read_as.strip() != sent_unit and sent_unit:
        original_unit = sent_unit  # what the analyser wrote, not what the person read it as
    measurement = results.Measurement(
        accession_number=accession_number,
        test_code=code,
        value=reading.value,
        unit=reading.unit or None,
        original_value=row.value if original_unit else "",
        original_unit=original_unit[:40],
        observed_at=row.observed_at,
        preliminary=row.result_status.upper() == "P",
        instrument=row.instrument,
        operator=row.operator,
        instrument_flags=row.instrument_flags,
        comment=note,
    )
    outcome = results.record(session, actor=actor, measurement=measurement)
    result = result_queries.stored(session, outcome)
    row.status = RESOLVED
    row.handled_at = utcnow()
    row.handled_by = actor.username
    row.handling_note = note or f"assigned to {accession_number} {code}"
    if unit and unit.strip() != row.unit.strip():
        row.handling_note += f" (unit read as {unit.strip()})"
    row.result_id = result.id
    audit.record(
        session,
        actor=actor,
        action="instrument.unmatched.resolve",
        entity_type="unmatched_result",
        entity_id=row.id,
        patient_id=result.patient_id,
        before={"status": OPEN, "specimen_id": row.specimen_id, "reason": row.reason},
        after={"status": RESOLVED, "result_id": result.id},
        detail=row.handling_note,
    )
    return outcome


def discard(session: Session, *, actor: Actor, unmatched_id: int, reason: str) -> UnmatchedResult:
    if not reason.strip():
        raise InvalidInput.field(
            "reason", "say why the result is discarded", code="discard_reason_missing"
        )
    row = _open(session, unmatched_id)
    row.status = DISCARDED
    row.handled_at = utcnow()
    row.handled_by = actor.username
    row.handling_note = reason.strip()
    audit.record(
        session,
        actor=actor,
        action="instrument.unmatched.discard",
        entity_type="unmatched_result",
        entity_id=row.id,
        before={"status": OPEN, "specimen_id": row.specimen_id, "reason": row.reason},
        after={"status": DISCARDED},
        detail=row.handling_note,
    )
    return row


def list_qc(
    session: Session,
    *,
    instrument: str | None = None,
    since: datetime | None = None,
    limit: int = 500,
) -> list[QcResult]:
    query = select(QcResult).order_by(QcResult.received_at.desc(), QcResult.id.desc())
    if instrument:
        query = query.where(QcResult.instrument == instrument)
    if since is not None:
        query = query.where(QcResult.received_at >= since)
    return list(session.scalars(query.limit(limit)))


@dataclass(frozen=True, slots=True, kw_only=True)
class WorklistEntry:
    """A specimen in the lab with tests this analyser runs (its codes); no patient data."""

    accession_number: str
    test_codes: tuple[str, ...]
    priority: str


def worklist(
    session: Session, *, instrument: InstrumentConfig, limit: int = 200
) -> list[WorklistEntry]:
    entries: list[WorklistEntry] = []
    for specimen, order, tests in work_lists.worklist(session, limit=limit * 4):
        codes = [
            code
            for code in (instrument.instrument_code(t.test.code) for t in tests)
            if code is not None
        ]
        if codes:
            entries.append(
                WorklistEntry(
                    accession_number=specimen.accession_number,
                    test_codes=tuple(dict.fromkeys(codes)),
                    priority=order.priority,
                )
            )
        if len(entries) >= limit:
            break
    return entries


def orders_to_download(
    session: Session, *, instrument: InstrumentConfig, limit: int = 50
) -> list[SpecimenOrder]:
    """Received specimens with tests this analyser runs that were not pushed to it yet, whose
    push failed, or that have tests the last push did not carry (a reflex or add-on test, or a
    rerun, which empties the pushed codes): claimed by a `queued` row in the same transaction."""
    found: list[SpecimenOrder] = []
    for entry in worklist(session, instrument=instrument, limit=limit * 4):
        pair = session.execute(
            select(Specimen, OrderDownload)
            .outerjoin(
                OrderDownload,
                (OrderDownload.specimen_id == Specimen.id)
                & (OrderDownload.instrument == instrument.name),
            )
            .where(Specimen.accession_number == entry.accession_number)
        ).first()
        if pair is None:
            continue
        specimen, row = pair._tuple()
        if row is not None and not _push_due(row, entry.test_codes):
            continue
        if row is None:
            row = OrderDownload(
                instrument=instrument.name,
                specimen_id=specimen.id,
                accession_number=specimen.accession_number,
                test_codes=list(entry.test_codes),
                attempts=0,
            )
            session.add(row)
        row.status = DownloadStatus.QUEUED
        row.test_codes = list(entry.test_codes)
        row.attempts += 1
        found.append(
            SpecimenOrder(
                accession_number=specimen.accession_number,
                test_codes=entry.test_codes,
                priority={"stat": "S", "urgent": "A"}.get(entry.priority, "R"),
                # O-8 in the analyser's time zone, as every timestamp we send it.
                collected_at=instrument.wall_clock(specimen.collected_at)
                if specimen.collected_at
                else None,
            )
        )
        if len(found) >= limit:
            break
    session.flush()
    return found


def _push_due(row: OrderDownload, test_codes: Sequence[str]) -> bool:
    if row.status == DownloadStatus.FAILED:
        return True
    return row.status == DownloadStatus.SENT and not set(test_codes) <= set(row.test_codes)


def download_finished(
    session: Session, *, instrument: str, accession_numbers: list[str], delivered: bool
) -> None:
    rows = session.scalars(
        select(OrderDownload).where(
            OrderDownload.instrument == instrument,
            OrderDownload.accession_number.in_(accession_numbers),
        )
    )
    for row in rows:
        row.status = DownloadStatus.SENT if delivered else DownloadStatus.FAILED
        row.sent_at = utcnow() if delivered else None
