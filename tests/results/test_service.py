"""The results service: one path for every result, versions that never change, refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from lab.errors import Conflict, InvalidInput, NotFound
from lab.results import queries as result_queries
from lab.results import service as results
from lab.results.queries import stored
from lab.results.service import Measurement
from lab.specimens import service as specimens
from lab.tables import AuditEvent
from lab.users.roles import Role
from testkit.orders import place
from testkit.patients import OLA_FNR, kari
from tests.conftest import actor

BIO = actor(Role.TECHNICIAN)
ANALYSER = actor(Role.INSTRUMENT, "XN-1")
LEGE = actor(Role.PHYSICIAN)


def serum_accession(db: Session, placer: str, tests: list[str] | None = None, **kw: object) -> str:
    order = place(db, BIO, placer=placer, tests=tests or ["NA", "K", "KREA"], **kw)  # type: ignore[arg-type]
    number = next(
        s.accession_number for s in specimens.tubes_of_order(db, order.id) if s.container == "SERUM"
    )
    specimens.receive(db, actor=BIO, number=number)
    return number


def measure(number: str, code: str, value: str, **kw: object) -> Measurement:
    return Measurement(
        accession_number=number,
        test_code=code,
        value=value,
        instrument="cobas-1",
        observed_at=datetime(2026, 11, 27, 8, 0, tzinfo=UTC),
        **kw,  # type: ignore[arg-type]
    )


def test_the_same_result_twice_changes_nothing(db: Session) -> None:
    number = serum_accession(db, "R-1")
    first = results.record(db, actor=ANALYSER, measurement=measure(number, "NA", "141"))
    again = results.record(db, actor=ANALYSER, measurement=measure(number, "NA", "141"))
    assert first.changed and not again.changed
    assert again.result_id == first.result_id and stored(db, again).version == 1
    rerun = results.record(db, actor=ANALYSER, measurement=measure(number, "NA", "139"))
    assert rerun.changed and stored(db, rerun).version == 2
    assert [v.reason for v in stored(db, rerun).versions] == ["", "rerun"]


def test_versions_cannot_be_rewritten(db: Session) -> None:
    number = serum_accession(db, "R-2")
    outcome = results.record(db, actor=ANALYSER, measurement=measure(number, "K", "4.1"))
    db.flush()
    with pytest.raises(DBAPIError, match=r"append-only|permission denied"), db.begin_nested():
        db.execute(
            text("UPDATE result_version SET value_numeric = 9 WHERE result_id = :id"),
            {"id": outcome.result_id},
        )
    with pytest.raises(DBAPIError, match=r"append-only|permission denied"), db.begin_nested():
        db.execute(text("DELETE FROM audit_event"))


def test_refusals(db: Session) -> None:
    number = serum_accession(db, "R-3")
    with pytest.raises(NotFound, match="not ordered"):
        results.record(db, actor=BIO, measurement=measure(number, "HB", "13.0"))
    with pytest.raises(NotFound, match="unknown test"):
        results.record(db, actor=BIO, measurement=measure(number, "XYZ", "1"))
    outcome = results.record(db, actor=BIO, measurement=measure(number, "KREA", "80"))
    verified = results.verify(db, actor=LEGE, result_id=outcome.result_id)
    with pytest.raises(Conflict, match="verified already"):
        results.verify(db, actor=LEGE, result_id=verified.id)
    # A further measurement of a released result is kept for review; the result stands.
    further = results.record(db, actor=ANALYSER, measurement=measure(number, "KREA", "81"))
    assert further.changed and further.status == "verified"
    assert [str(m.value_numeric) for m in stored(db, further).measurements] == ["80", "81"]
    assert stored(db, further).value_numeric == Decimal("80")
    with pytest.raises(InvalidInput, match="reason"):
        results.correct(db, actor=LEGE, result_id=verified.id, value="82", reason=" ")
    preliminary = results.record(
        db, actor=ANALYSER, measurement=measure(number, "NA", "140", preliminary=True)
    )
    with pytest.raises(Conflict, match="preliminary"):
        results.verify(db, actor=LEGE, result_id=preliminary.result_id)
    specimens.reject(db, actor=BIO, number=number, reason="RH", comment="haemolysed")
    with pytest.raises(Conflict, match="rejected"):
        results.record(db, actor=ANALYSER, measurement=measure(number, "K", "4.0"))


def test_reference_interval_follows_sex(db: Session) -> None:
    # Creatinine 100 umol/L: above the women's interval, inside the men's (NORIP).
    woman = serum_accession(db, "R-4", ["KREA"])
    man = serum_accession(
        db,
        "R-5",
        ["KREA"],
        patient=kari(OLA_FNR).__class__(
            identifiers=kari(OLA_FNR).identifiers, family_name="Nordmann", given_name="Ola"
        ),
    )
    f = results.record(db, actor=ANALYSER, measurement=measure(woman, "KREA", "100"))
    m = results.record(db, actor=ANALYSER, measurement=measure(man, "KREA", "100"))
    assert stored(db, f).flags == ["H"]
    assert stored(db, m).flags == []
    assert stored(db, m).versions[0].reference_high == Decimal("105")


def test_verify_unremarkable_leaves_flagged_results(db: Session) -> None:
    number = serum_accession(db, "R-6")
    # R-7 "N" is the analyser saying "normal": that is unremarkable too.
    results.record(
        db, actor=ANALYSER, measurement=measure(number, "NA", "140", instrument_flags="N")
    )
    results.record(db, actor=ANALYSER, measurement=measure(number, "K", "5.5"))
    results.record(
        db, actor=ANALYSER, measurement=measure(number, "KREA", "70", instrument_flags="N,W")
    )
    verified = results.verify_unremarkable(db, actor=LEGE, accession_number=number)
    assert [r.status for r in verified] == ["verified"]
    queue = {r.id for r in result_queries.review_queue(db, limit=1000)}
    assert len(queue & {r.id for r in result_queries.for_specimen(db, number, actor=LEGE)}) == 2


def test_results_on_an_aliquot_complete_the_primary_tube(db: Session) -> None:
    number = serum_accession(db, "R-7", ["NA"])
    child = specimens.make_aliquot(db, actor=BIO, number=number)
    outcome = results.record(
        db, actor=ANALYSER, measurement=measure(child.accession_number, "NA", "140")
    )
    primary = specimens.get_by_accession(db, number)
    # The result names the tube it was measured in, and completes the primary's test.
    assert stored(db, outcome).specimen_id == child.id and child.parent_id == primary.id
    assert primary.status == "completed"
    listed = result_queries.for_specimen(db, number, actor=LEGE)
    assert [r.id for r in listed] == [outcome.result_id]


def test_cancel_and_the_order_status(db: Session) -> None:
    number = serum_accession(db, "R-8", ["NA"])
    outcome = results.record(db, actor=ANALYSER, measurement=measure(number, "NA", "150"))
    results.verify(db, actor=LEGE, result_id=outcome.result_id)
    cancelled = results.cancel(db, actor=LEGE, result_id=outcome.result_id, reason="wrong patient")
    assert cancelled.status == "cancelled" and cancelled.version == 3
    with pytest.raises(Conflict):
        results.cancel(db, actor=LEGE, result_id=outcome.result_id, reason="again")


def test_a_refused_measurement_costs_the_tube_nothing(db: Session) -> None:
    number = serum_accession(db, "R-9")
    outcomes = results.record_tube(
        db,
        actor=ANALYSER,
        measurements=[
            measure(number, "NA", "140"),
            measure(number, "K", "four"),
            measure(number, "HB", "13.0"),
            measure(number, "XYZ", "1"),
            measure(number, "KREA", "80", unit="mg/dL"),
        ],
    )
    assert [o.refused for o in outcomes] == [False, True, True, True, True]
    refusals = [o.refusal for o in outcomes if o.refusal is not None]
    assert [(r.field, r.kind) for r in refusals] == [
        ("value", "invalid"),
        ("test_code", "not_found"),
        ("test_code", "not_found"),
        ("unit", "invalid"),
    ]
    assert "not ordered" in refusals[1].message and "unknown test" in refusals[2].message
    stored_na = stored(db, outcomes[0])
    assert stored_na.value_numeric == Decimal("140") and stored_na.version == 1
    listed = result_queries.for_specimen(db, number, actor=LEGE)
    assert [r.id for r in listed] == [stored_na.id]


def test_a_tube_that_cannot_take_results_refuses_each_measurement(db: Session) -> None:
    number = serum_accession(db, "R-10")
    specimens.reject(db, actor=BIO, number=number, reason="RH", comment="haemolysed")
    outcomes = results.record_tube(
        db, actor=ANALYSER, measurements=[measure(number, "NA", "140"), measure(number, "K", "4")]
    )
    assert all(o.refusal is not None and "rejected" in o.refusal.message for o in outcomes)
    unknown = results.record_tube(db, actor=ANALYSER, measurements=[measure("99999999", "NA", "1")])
    assert unknown[0].refusal is not None and unknown[0].refusal.field == "accession_number"


def test_the_same_test_twice_in_one_message_is_a_rerun(db: Session) -> None:
    number = serum_accession(db, "R-11", ["NA"])
    first, second, again = results.record_tube(
        db,
        actor=ANALYSER,
        measurements=[
            measure(number, "NA", "150"),
            measure(number, "NA", "141"),
            measure(number, "NA", "141"),
        ],
    )
    assert first.changed and second.changed and not again.changed
    assert first.result_id == second.result_id == again.result_id
    result = stored(db, second)
    assert result.version == 2 and result.value_numeric == Decimal("141")
    assert [(v.version, v.reason) for v in result.versions] == [(1, ""), (2, "rerun")]
    assert [(m.number, m.origin) for m in result.measurements] == [(1, "first"), (2, "rerun")]
    assert result.versions[-1].measurement_id == result.measurements[-1].id
    trail = db.scalars(
        select(AuditEvent.after).where(
            AuditEvent.entity_type == "result", AuditEvent.entity_id == str(result.id)
        )
    ).all()
    assert [after["value"] for after in trail if after] == ["150", "141"]
