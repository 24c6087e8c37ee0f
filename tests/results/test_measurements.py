"""Several measurements of one test: each kept with its origin, one reported, chosen by a person."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.errors import Conflict, InvalidInput, NotFound
from lab.results import queries as result_queries
from lab.results import service as results
from lab.results.queries import stored
from lab.results.service import Measurement
from lab.tables import AuditEvent, ReportedResult
from lab.users.roles import Role
from tests.conftest import actor
from tests.results.test_service import ANALYSER, LEGE, serum_accession

AT = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def measure(number: str, code: str, value: str, **kw: object) -> Measurement:
    fields: dict[str, object] = {"instrument": "cobas-1", "observed_at": AT, **kw}
    return Measurement(accession_number=number, test_code=code, value=value, **fields)  # type: ignore[arg-type]


def test_a_dilution_in_the_same_message_is_a_further_measurement(db: Session) -> None:
    number = serum_accession(db, "M-1", ["KREA", "NA"])
    outcomes = results.record_tube(
        db,
        actor=ANALYSER,
        measurements=[
            measure(number, "KREA", ">2000", instrument_flags=">"),
            measure(number, "KREA", "2450", dilution="5"),
            measure(number, "NA", "140"),
        ],
    )
    assert [o.refused for o in outcomes] == [False, False, False]
    result = stored(db, outcomes[1])
    assert [(m.number, m.origin, m.dilution) for m in result.measurements] == [
        (1, "first", ""),
        (2, "dilution", "5"),
    ]
    # The newest is reported until someone chooses; the first stays beside it.
    assert result.value_numeric == Decimal("2450") and result.status == "awaiting_review"
    assert result.versions[-1].reason == "dilution"
    assert stored(db, outcomes[2]).value_numeric == Decimal("140")


def test_a_repeat_on_another_analyser_and_the_same_one_sent_again(db: Session) -> None:
    number = serum_accession(db, "M-2", ["K"])
    first = results.record(db, actor=ANALYSER, measurement=measure(number, "K", "6.1"))
    other = results.record(
        db, actor=ANALYSER, measurement=measure(number, "K", "4.2", instrument="cobas-2")
    )
    again = results.record(
        db, actor=ANALYSER, measurement=measure(number, "K", "6.1")
    )  # measurement 1 sent again: nothing new
    assert first.changed and other.changed and not again.changed
    result = stored(db, other)
    assert [(m.number, m.origin) for m in result.measurements] == [(1, "first"), (2, "repeat")]
    assert result.version == 2


def test_the_reviewer_chooses_the_measurement_to_report(db: Session) -> None:
    number = serum_accession(db, "M-3", ["K"])
    results.record(db, actor=ANALYSER, measurement=measure(number, "K", "4.1"))
    second = results.record(
        db, actor=ANALYSER, measurement=measure(number, "K", "6.4", instrument_flags="W")
    )
    result = stored(db, second)
    first_id = result.measurements[0].id
    with pytest.raises(Conflict, match="reported already"):
        results.choose(
            db, actor=LEGE, result_id=result.id, measurement_id=result.measurements[1].id
        )
    with pytest.raises(NotFound):
        results.choose(db, actor=LEGE, result_id=result.id, measurement_id=-1)
    chosen = results.choose(db, actor=LEGE, result_id=result.id, measurement_id=first_id)
    assert chosen.value_numeric == Decimal("4.1") and chosen.status == "awaiting_review"
    assert chosen.flags == [] and chosen.versions[-1].measurement_id == first_id
    assert chosen.versions[-1].instrument_flags == ""
    verified = results.verify(db, actor=LEGE, result_id=result.id)
    assert verified.value_numeric == Decimal("4.1")
    reported = db.scalars(select(ReportedResult).where(ReportedResult.result_id == result.id)).all()
    assert [r.result_version for r in reported] in ([], [verified.version])


def test_a_further_measurement_of_a_released_result_waits_for_a_look(db: Session) -> None:
    number = serum_accession(db, "M-4", ["NA"])
    first = results.record(db, actor=ANALYSER, measurement=measure(number, "NA", "140"))
    assert first.result_id is not None
    results.verify(db, actor=LEGE, result_id=first.result_id)
    later = measure(number, "NA", "128", observed_at=datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
    further = results.record(db, actor=ANALYSER, measurement=later)
    assert further.changed and further.status == "verified"
    waiting = result_queries.further_measurements(db)
    assert [(r.id, m.number) for r, m in waiting] == [(first.result_id, 2)]
    # The audit trail names the measurement kept (its id is given by the server, in the
    # statement that stores it).
    trail = db.scalars(
        select(AuditEvent)
        .where(AuditEvent.entity_type == "result", AuditEvent.entity_id == str(first.result_id))
        .order_by(AuditEvent.id)
    ).all()
    assert trail[-1].action == "result.measurement"
    assert trail[-1].after is not None
    assert trail[-1].after["measurement"] == waiting[0][1].id
    assert trail[-1].after["value"] == "128"
    with pytest.raises(InvalidInput, match="reason"):
        results.choose(db, actor=LEGE, result_id=first.result_id, measurement_id=waiting[0][1].id)
    corrected = results.choose(
        db,
        actor=LEGE,
        result_id=first.result_id,
        measurement_id=waiting[0][1].id,
        reason="rerun after clot: 128 is right",
    )
    assert corrected.status == "corrected" and corrected.value_numeric == Decimal("128")
    assert result_queries.further_measurements(db) == []


def test_a_further_measurement_set_aside(db: Session) -> None:
    number = serum_accession(db, "M-5", ["NA"])
    first = results.record(db, actor=ANALYSER, measurement=measure(number, "NA", "140"))
    assert first.result_id is not None
    results.verify(db, actor=LEGE, result_id=first.result_id)
    with pytest.raises(Conflict, match="no further measurement"):
        results.set_aside(db, actor=LEGE, result_id=first.result_id, reason="fine")
    results.record(
        db,
        actor=actor(Role.INSTRUMENT, "cobas-1"),
        measurement=measure(
            number, "NA", "141", observed_at=datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
        ),
    )
    results.set_aside(db, actor=LEGE, result_id=first.result_id, reason="within RCV")
    assert result_queries.further_measurements(db) == []
    assert stored(db, first).value_numeric == Decimal("140")
