"""One received ASTM message, handled in one database transaction (no I/O besides the session).

Results go through `lab.results.service.record_tube` (the one path for every result); what cannot be
recorded is kept in `unmatched_result` with the reason; QC results go to `qc_result` and the
levels of one message are judged as one run by `lab.qc` *before* the message's patient results
are recorded, so a rejection holds the patient results that came with it; host queries are
answered from the specimen's pending tests. The caller commits, then acknowledges
the frame that completed the message (docs/architecture.md, rule 3).

A message is never refused because of one of its results: each specimen's results are stored
under a savepoint, and should that fail, each result alone; whatever still cannot be stored
goes to the unmatched queue with its reason and the whole message, and the rest is stored.
The analyser runner first handles a message without those savepoints (`guarded=False`: two
statements fewer, the common case); should storing fail, it rolls the transaction back and
handles the message again guarded, which ends as above.
Units are compared as UCUM units (`lab.catalog.units`): a result in a unit convertible to the
catalog's is converted with the original kept, any other waits in the unmatched queue. Logs
name the analyser, the record's index in the message and the kind of failure, never a value
or an identifier.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from instruments.astm.errors import RecordError
from instruments.astm.message import Message, ResultGroup
from instruments.astm.record_codec import build_record_text, looks_like_utf8, parse_records
from instruments.astm.records import (
    DEFAULT_ENCODING,
    HeaderRecord,
    OrderRecord,
    QueryRecord,
    Record,
)
from instruments.config import InstrumentConfig
from instruments.profiles import FieldRef, Profile, SpecimenOrder
from lab.audit import Actor
from lab.catalog import units
from lab.catalog.rules import snapshot
from lab.errors import LabError
from lab.qc import queue as qc_queue
from lab.qc import service as qc
from lab.results import service as results
from lab.rules import SerumIndices
from lab.specimens import service as specimens
from lab.tables import QcResult, UnmatchedResult, UnmatchedStatus

log = logging.getLogger(__name__)

# LIS2-A2 10.1.9 result status: P preliminary, F final, C correction; X (cannot be done),
# I (pending), Q (response to query), M/R/S/V are not results to record.
_RECORDABLE = {"", "F", "C", "P", "R"}
_PRIORITY = {"stat": "S", "urgent": "A", "asap": "A"}


@dataclass(slots=True, kw_only=True)
class MessageOutcome:
    reply: list[Record] | None = None  # records to send back (a query answer)
    recorded: int = 0
    repeated: int = 0
    unmatched: int = 0
    qc: int = 0
    queries: int = 0
    notes: list[str] = field(default_factory=list)


def instrument_actor(instrument: InstrumentConfig) -> Actor:
    return Actor(
        user_id=None, username=instrument.name, roles=frozenset({"instrument"}), channel="astm"
    )


def encoding_of(instrument: InstrumentConfig, profile: Profile) -> str:
    return instrument.encoding or profile.default_encoding or DEFAULT_ENCODING


def decode_message(
    raws: Sequence[bytes], *, instrument: InstrumentConfig, profile: Profile
) -> list[Record]:
    return parse_records(raws, encoding=encoding_of(instrument, profile))


def handle_raw_message(
    session: Session,
    *,
    instrument: InstrumentConfig,
    profile: Profile,
    raws: Sequence[bytes],
    now: datetime | None = None,
    guarded: bool = True,
) -> MessageOutcome:
    """Decode and handle; a message that cannot be decoded is kept whole as unmatched.

    `guarded`: each specimen's results are stored under a savepoint, so a failure to store them
    is kept as unmatched and the rest of the message stored. Unguarded, such a failure raises
    (the session's transaction is then for the caller to roll back) and nothing is kept for it:
    the caller handles the message again guarded in a new transaction."""
    encoding = encoding_of(instrument, profile)
    try:
        records = decode_message(raws, instrument=instrument, profile=profile)
    except RecordError as error:
        outcome = MessageOutcome()
        text = "\r".join(raw.decode("latin-1") for raw in raws)
        outcome.unmatched += _keep_unmatched(
            session,
            instrument=instrument,
            specimen_id="",
            instrument_test_code="",
            test_code=None,
            group=None,
            raw=text,
            raw_message=text,
            reason=f"the message could not be read: {error}",
            code="unreadable",
            params={"error": str(error)},
        )
        log.warning(
            "analyser %s: a message of %d records could not be read (%s); kept whole as unmatched",
            instrument.name,
            len(raws),
            type(error).__name__,
        )
        return outcome
    outcome = handle_message(
        session,
        instrument=instrument,
        profile=profile,
        records=records,
        now=now,
        raw_message="\r".join(raw.decode(encoding, errors="replace") for raw in raws),
        guarded=guarded,
    )
    if looks_like_utf8(raws, encoding):
        outcome.notes.append(
            f"the message is valid UTF-8 but the analyser is read as {encoding}: letters beyond "
            "ASCII are misread; set its encoding"
        )
    return outcome


@dataclass(slots=True, kw_only=True)
class _Intake:
    """One message being handled: where it came from and what became of it so far."""

    session: Session
    instrument: InstrumentConfig
    profile: Profile
    actor: Actor
    outcome: MessageOutcome
    raw_message: str  # the whole message, kept with every result that goes unmatched
    fields: Sequence[FieldRef] | None  # where the specimen ID is (None: the profile's list)
    index: dict[int, int]  # id(record) -> its 1-based place in the message, for logs
    guarded: bool  # each specimen's results under a savepoint (`handle_raw_message`)

    def place(self, record: Record) -> int:
        return self.index.get(id(record), 0)


def handle_message(
    session: Session,
    *,
    instrument: InstrumentConfig,
    profile: Profile,
    records: Sequence[Record],
    now: datetime | None = None,
    raw_message: str | None = None,
    guarded: bool = True,
) -> MessageOutcome:
    """Handle decoded records; `guarded` as in `handle_raw_message`."""
    message = Message.from_records(records)
    intake = _Intake(
        session=session,
        instrument=instrument,
        profile=profile,
        actor=instrument_actor(instrument),
        outcome=MessageOutcome(),
        raw_message=raw_message
        if raw_message is not None
        else "\r".join(build_record_text(r) for r in records),
        fields=instrument.specimen_fields,
        index={id(record): number for number, record in enumerate(records, start=1)},
        guarded=guarded,
    )
    outcome = intake.outcome
    qc_message = profile.is_qc_message(message.header)
    controls: list[int] = []  # new qc_result rows: the levels of this message form one run
    patient_groups = []
    for order_group in message.orders():
        order = order_group.order
        specimen_id = profile.specimen_id(order, intake.fields) if order is not None else ""
        if qc_message or profile.is_qc_order(order) or instrument.is_control(specimen_id):
            for group in order_group.results:
                kept = _keep_qc(
                    session,
                    instrument=instrument,
                    profile=profile,
                    control_id=specimen_id,
                    group=group,
                )
                outcome.qc += kept is not None
                if kept is not None:
                    controls.append(kept)
        else:
            patient_groups.append((specimen_id, order_group))
    if controls:
        _judge_controls(session, actor=intake.actor, instrument=instrument, qc_result_ids=controls)
    for specimen_id, order_group in patient_groups:
        ready: list[tuple[ResultGroup, results.Measurement]] = []
        indices, groups = _serum_indices(intake, order_group.results)
        for group in groups:
            measurement = _handle_result(
                intake, specimen_id=specimen_id, order=order_group.order, group=group
            )
            if measurement is not None:
                if indices is not None:  # most analysers send none: no copy for them
                    measurement = replace(measurement, indices=indices)
                ready.append((group, measurement))
        _record(intake, specimen_id=specimen_id, ready=ready)
    queries = [q for q in message.queries if q.request_status.upper() != "A"]  # A: cancel
    if queries:
        outcome.queries = len(queries)
        outcome.reply = _answer_queries(
            session,
            instrument=instrument,
            profile=profile,
            header=message.header,
            queries=queries,
            now=now or datetime.now(UTC),
        )
    return outcome


def _serum_indices(
    intake: _Intake, groups: Sequence[ResultGroup]
) -> tuple[SerumIndices | None, list[ResultGroup]]:
    """The specimen's haemolysis, icterus and lipaemia indices, from the R records whose codes
    the analyser's `serum_indices` names; they are not results, and the rest are returned. An
    index that is not a number is left among the results (it goes to the unmatched queue)."""
    codes = {code: key for key, code in intake.instrument.serum_indices.items()}
    if not codes:
        return None, list(groups)
    found: dict[str, Decimal] = {}
    rest: list[ResultGroup] = []
    for group in groups:
        key = codes.get(intake.profile.test_code(group.result.test).strip())
        try:
            value = Decimal(group.result.value.strip()) if key else None
        except InvalidOperation:
            value = None
        if key is None or value is None or not value.is_finite():
            rest.append(group)
        else:
            found[key] = value
    if not found:
        return None, rest
    return SerumIndices(h=found.get("h"), i=found.get("i"), l=found.get("l")), rest


def in_catalog_unit(
    session: Session, *, test_code: str, value: str, unit: str | None
) -> units.Reading | units.NotConvertible:
    """A value the analyser sent, in the unit the catalog keeps for `test_code` (UCUM)."""
    test = snapshot(session).by_code.get(test_code)
    if test is None or test.result_type != "numeric" or not test.unit:
        return units.Reading(value=value, unit=(unit or "").strip())
    return units.in_catalog_unit(value, unit, catalog_unit=test.unit, catalog_ucum=test.ucum)


def _handle_result(
    intake: _Intake, *, specimen_id: str, order: OrderRecord | None, group: ResultGroup
) -> results.Measurement | None:
    """Results that cannot be recorded are kept here; the rest come back to record."""
    instrument, profile = intake.instrument, intake.profile
    result = group.result
    instrument_code = profile.test_code(result.test)
    local_code = instrument.local_code(instrument_code)
    reason, code, params = "", "", {}
    if not specimen_id:
        fields = ", ".join(map(str, intake.fields or profile.specimen_fields))
        reason = f"the result has no specimen ID (looked in {fields} of the O record before it)"
        code, params = "no_specimen", {"fields": fields}
    elif local_code is None:
        reason = f"test code {instrument_code!r} is not mapped for analyser {instrument.name}"
        code, params = "not_mapped", {"code": instrument_code, "analyser": instrument.name}
    elif result.status.upper() not in _RECORDABLE:
        reason = f"result status {result.status!r} (R-9) is not a result to record"
        code, params = "status", {"status": result.status}
    if not reason and local_code is not None:
        try:
            observed_at = instrument.read_clock(result.completed_at)
        except RecordError as error:
            observed_at, reason = None, f"R-13 cannot be read: {error}"
            code, params = "clock", {"error": str(error)}
        reading = in_catalog_unit(
            intake.session, test_code=local_code, value=result.value, unit=result.units or None
        )
        if isinstance(reading, units.NotConvertible):
            if not reason:
                reason, code, params = reading.reason, reading.code, dict(reading.params)
        elif not reason:
            operator = result.operator[0] if result.operator else ""
            module = result.instrument[0] if result.instrument else ""
            return results.Measurement(
                accession_number=specimen_id,
                test_code=local_code,
                value=reading.value,
                unit=reading.unit or None,
                original_value=reading.original_value,
                original_unit=reading.original_unit,
                dilution=profile.dilution(result.test)[:20],
                observed_at=observed_at,
                preliminary=result.status.upper() == "P",
                instrument=f"{instrument.name}/{module}" if module else instrument.name,
                operator=operator,
                instrument_flags=profile.instrument_flags(group),
                # The rule set maps these flags per analyser profile (HH: a critical call).
                flag_profile=profile.name,
                comment=profile.result_comment(group),
            )
    if not specimen_id and order is not None:
        specimen_id = _any_sample_number(order)
    _unmatched(
        intake, specimen_id=specimen_id, group=group, reason=reason, code=code, params=params
    )
    return None


def _any_sample_number(order: OrderRecord) -> str:
    """For the unmatched queue only (never to record against): O-3 or O-4 as sent, so the
    person who resolves the result sees the analyser's sample number."""
    for number in (3, 4):
        text = "^".join(part.strip() for part in order.components(number))
        if text.strip("^"):
            return f"O-{number}: {text.strip('^')}"
    return ""


def _record(
    intake: _Intake,
    *,
    specimen_id: str,
    ready: list[tuple[ResultGroup, results.Measurement]],
) -> None:
    """Record a specimen's results as one tube; each one the rules refuse goes to the
    unmatched queue with its reason, and the others are stored. Should storing fail (a
    fault of ours that no retry cures), each result is stored alone and what still fails is
    kept as unmatched: the analyser gets its ACK and the rest of the message is in."""
    if not ready:
        return
    measurements = [m for _, m in ready]
    if not intake.guarded:  # a failure raises: the message is handled again, guarded
        recorded = results.record_tube(
            intake.session, actor=intake.actor, measurements=measurements
        )
        _count(intake, specimen_id=specimen_id, ready=ready, recorded=recorded)
        return
    try:
        with intake.session.begin_nested():
            recorded = results.record_tube(
                intake.session, actor=intake.actor, measurements=measurements
            )
    except (OperationalError, InterfaceError):
        raise  # the database is away: the whole message is refused and comes again
    except Exception as error:
        if len(ready) > 1:
            for alone in ready:
                _record(intake, specimen_id=specimen_id, ready=[alone])
            return
        ((group, _),) = ready
        log.warning(
            "analyser %s: record %d of a message not stored (%s at %s); kept as unmatched",
            intake.instrument.name,
            intake.place(group.result),
            type(error).__name__,
            failure_site(error),
        )
        detail = error.message if isinstance(error, LabError) else type(error).__name__
        _unmatched(
            intake,
            specimen_id=specimen_id,
            group=group,
            reason=f"the result could not be stored ({detail}); the rest of the message was",
            code="not_stored",
            params={"detail": detail},
        )
        return
    _count(intake, specimen_id=specimen_id, ready=ready, recorded=recorded)


def _count(
    intake: _Intake,
    *,
    specimen_id: str,
    ready: list[tuple[ResultGroup, results.Measurement]],
    recorded: list[results.Outcome],
) -> None:
    """What became of each result of a tube: counted, or kept as unmatched when refused."""
    outcome = intake.outcome
    for (group, _), one in zip(ready, recorded, strict=True):
        if one.refusal is not None:
            refusal = one.refusal
            _unmatched(
                intake,
                specimen_id=specimen_id,
                group=group,
                reason=refusal.message,
                code=refusal.code or "",
                params=refusal.params,
            )
        elif one.changed:
            outcome.recorded += 1
        else:
            outcome.repeated += 1


def failure_site(error: BaseException) -> str:
    """File and line where an error arose: enough to find a bug, nothing of the data."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno}"


def _unmatched(
    intake: _Intake,
    *,
    specimen_id: str,
    group: ResultGroup,
    reason: str,
    code: str = "",
    params: Mapping[str, object] | None = None,
) -> None:
    instrument, profile = intake.instrument, intake.profile
    instrument_code = profile.test_code(group.result.test)
    intake.outcome.unmatched += _keep_unmatched(
        intake.session,
        instrument=instrument,
        specimen_id=specimen_id,
        instrument_test_code=instrument_code,
        test_code=instrument.local_code(instrument_code),
        group=group,
        raw=build_record_text(group.result),
        raw_message=intake.raw_message,
        reason=reason,
        code=code,
        params=params,
        profile=profile,
    )


def _observed(instrument: InstrumentConfig, result: Any) -> datetime | None:
    try:
        return instrument.read_clock(result.completed_at)
    except RecordError:
        return None  # kept in the raw record; the reason says what else is wrong


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def _keep_unmatched(
    session: Session,
    *,
    instrument: InstrumentConfig,
    specimen_id: str,
    instrument_test_code: str,
    test_code: str | None,
    group: ResultGroup | None,
    raw: str,
    raw_message: str,
    reason: str,
    code: str = "",
    params: Mapping[str, object] | None = None,
    profile: Profile | None = None,
) -> int:
    """Insert once: the same result sent again (same analyser, record and time) adds nothing.
    Every text is cut to its column, so keeping a result can never fail on its length."""
    result = group.result if group is not None else None
    values = {
        "fingerprint": _fingerprint("unmatched", instrument.name, specimen_id, raw),
        "instrument": instrument.name[:64],
        "specimen_id": specimen_id[:80],
        "instrument_test_code": instrument_test_code[:80],
        "test_code": test_code[:20] if test_code else None,
        "value": result.value if result else "",
        "unit": (result.units if result else "")[:40],
        "instrument_flags": (
            profile.instrument_flags(group) if profile is not None and group is not None else ""
        )[:200],
        "result_status": (result.status if result else "")[:4],
        "operator": (result.operator[0] if result and result.operator else "")[:80],
        "observed_at": _observed(instrument, result) if result else None,
        "reason": reason,
        # The same reason as a code and parameters (texts), said by the pages in their language.
        "reason_code": code[:40],
        "reason_params": {name: str(value) for name, value in (params or {}).items()},
        "raw_record": raw,
        "raw_message": raw_message,
        "status": UnmatchedStatus.OPEN,
        "handling_note": "",
    }
    return _insert_once(session, UnmatchedResult, values)


def _keep_qc(
    session: Session,
    *,
    instrument: InstrumentConfig,
    profile: Profile,
    control_id: str,
    group: ResultGroup,
) -> int | None:
    """Store a control result once; the id of the new row, or None for a repeat."""
    result = group.result
    instrument_code = profile.test_code(result.test)
    raw = build_record_text(result)
    values = {
        "fingerprint": _fingerprint("qc", instrument.name, control_id, raw),
        "instrument": instrument.name,
        "control_id": control_id[:80],
        "instrument_test_code": instrument_code[:80],
        "test_code": (instrument.local_code(instrument_code) or "")[:20] or None,
        "value": result.value,
        "unit": result.units[:40],
        "instrument_flags": profile.instrument_flags(group)[:200],
        "result_status": result.status[:4],
        "operator": (result.operator[0] if result.operator else "")[:80],
        "observed_at": _observed(instrument, result),
        "raw_record": raw,
    }
    inserted = session.execute(
        insert(QcResult)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["fingerprint"])
        .returning(QcResult.id)
    )
    return inserted.scalar_one_or_none()


def _judge_controls(
    session: Session, *, actor: Actor, instrument: InstrumentConfig, qc_result_ids: list[int]
) -> None:
    """Judge the message's control results (a run per test). Should judging fail, the control
    results stay stored in `qc_result` and the message is still acknowledged: nothing is lost,
    and the failure is logged for the operator (its kind and place, not its text)."""
    try:
        with session.begin_nested():
            qc.take_analyser_results(
                session, actor=actor, instrument=instrument.name, qc_result_ids=qc_result_ids
            )
    except (OperationalError, InterfaceError):
        raise  # the database is away: the whole message is refused and comes again
    except Exception as error:
        log.error(
            "analyser %s: QC results of a message could not be judged (%s at %s); kept",
            instrument.name,
            type(error).__name__,
            failure_site(error),
        )
        # ... and put in the QC queue with the reason, where a person sees them.
        with session.begin_nested():
            qc_queue.keep_unjudged(
                session,
                actor=actor,
                qc_result_ids=qc_result_ids,
                reason=f"could not be judged ({type(error).__name__} at {failure_site(error)}): "
                "judge it again from the QC queue once the cause is fixed",
            )


def _insert_once(session: Session, table: type[UnmatchedResult], values: dict[str, Any]) -> int:
    """1 if the row is new, 0 if a row with its fingerprint is there already (a repeat)."""
    inserted = session.execute(
        insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["fingerprint"])
        .returning(table.id)
    )
    return 0 if inserted.scalar_one_or_none() is None else 1


def pending_order(
    session: Session,
    *,
    instrument: InstrumentConfig,
    accession_number: str,
) -> SpecimenOrder | None:
    """The specimen's pending tests this analyser runs, in its codes; None if unknown or none."""
    try:
        specimen = specimens.get_by_accession(session, accession_number)
    except LabError:
        return None
    codes: list[str] = []
    priority = "R"
    for ordered in specimens.pending_tests(session, specimen):
        code = instrument.instrument_code(ordered.test.code)
        if code is not None and code not in codes:
            codes.append(code)
        priority = _PRIORITY.get(ordered.order.priority, priority)
    if not codes:
        return None
    return SpecimenOrder(
        accession_number=specimen.accession_number,
        test_codes=tuple(codes),
        priority=priority,
        collected_at=instrument.wall_clock(specimen.collected_at)
        if specimen.collected_at
        else None,
    )


def _answer_queries(
    session: Session,
    *,
    instrument: InstrumentConfig,
    profile: Profile,
    header: HeaderRecord | None,
    queries: Sequence[QueryRecord],
    now: datetime,
) -> list[Record]:
    """LIS2-A2 12: answer with the specimen's orders (O-26 `Q`), or L-3 `I` if there are none."""
    found: list[SpecimenOrder] = []
    for query in queries:
        asked = profile.specimen_id(query, instrument.specimen_fields)
        order = pending_order(session, instrument=instrument, accession_number=asked)
        if order is None:
            continue
        # cobas e411: O-4 of the answer echoes Q-3 after the specimen ID (seq^carrier^pos...).
        echo = query.starting_range[2:]
        if any(echo):
            order = SpecimenOrder(
                accession_number=order.accession_number,
                test_codes=order.test_codes,
                priority=order.priority,
                collected_at=order.collected_at,
                instrument_specimen_id=(echo,),
            )
        found.append(order)
    local_now = instrument.wall_clock(now)  # H-14 in the analyser's time zone
    if not found:
        return profile.no_information(
            host_name=instrument.host_name, reply_to=header, now=local_now
        )
    return profile.orders_message(
        found, host_name=instrument.host_name, reply_to=header, now=local_now
    )
