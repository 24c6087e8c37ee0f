"""A patient result of a test locked by QC on its analyser waits with reason `qc`: never
autoverified, never released by "verify all unremarkable"; typed in by hand it is not locked."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from lab.qc import service as qc
from lab.results import service as results
from lab.results.service import Measurement
from lab.tables import Result, Specimen
from testkit.orders import place_and_receive
from tests.conftest import actor
from tests.qc.builders import na_run

BIO = actor("technician")
LEGE = actor("physician")
ANALYSER = actor("instrument", "demo")


def sodium(db: Session, placer: str, value: str, instrument: str) -> Result:
    number = place_and_receive(db, BIO, placer=placer, tests=["NA"])["NA"]
    outcome = results.record(
        db,
        actor=ANALYSER,
        measurement=Measurement(
            accession_number=number,
            test_code="NA",
            value=value,
            instrument=instrument,
            observed_at=datetime(2026, 11, 30, 9, 0, tzinfo=UTC),
        ),
    )
    found = db.get(Result, outcome.result_id)
    assert found is not None
    return found


def codes(result: Result) -> list[str]:
    return [hold["code"] for hold in result.holds]


def test_a_locked_test_holds_its_patient_results_with_qc(db: Session) -> None:
    na_run(db, 0.0, 3.4)
    held = sodium(db, "QCH-1", "140", "demo/ISE")
    assert held.status == "awaiting_review" and "qc" in codes(held)
    specimen = db.get(Specimen, held.specimen_id)
    assert specimen is not None
    assert (
        results.verify_unremarkable(db, actor=LEGE, accession_number=specimen.accession_number)
        == []
    )
    assert db.get(Result, held.id).status == "awaiting_review"  # type: ignore[union-attr]
    assert "qc" not in codes(sodium(db, "QCH-2", "140", "other-analyser"))
    assert "qc" not in codes(sodium(db, "QCH-3", "140", ""))  # typed in by hand


def test_locked_of_names_the_tests_locked_on_the_analyser_that_measured_them(db: Session) -> None:
    na_run(db, 0.0, 3.4)
    assert qc.locked_of(db, measured=[("demo/1", "NA"), ("demo/1", "K"), ("x", "NA")]) == {"NA"}
    assert qc.locked_of(db, measured=[("", "NA")]) == frozenset()


@given(st.lists(st.sampled_from([-3.5, -2.5, 0.0, 0.5, 2.5, 3.5]), min_size=1, max_size=5))
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_patient_result_of_a_locked_test_is_released(db: Session, zs: list[float]) -> None:
    """Whatever the control runs before it, a patient NA recorded while NA is locked is held."""
    savepoint = db.begin_nested()
    try:
        for minute, z in enumerate(zs):
            na_run(db, z, 0.0, minute=minute)
        locked = qc.is_locked(db, instrument="demo", test_code="NA")
        recorded = sodium(db, f"QCP-{len(zs)}-{zs[-1]}", "140", "demo")
        if locked:
            assert "qc" in codes(recorded)
            assert recorded.status not in ("verified", "corrected")
        else:
            assert "qc" not in codes(recorded)
    finally:
        savepoint.rollback()
