"""QC as it is read: status per analyser, chart series, the look-back list, moving averages."""

from __future__ import annotations

import dataclasses
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.qc import moving, queries
from lab.qc import service as qc
from lab.qc.materials import lot_for_control
from lab.results import service as results
from lab.results.service import Measurement
from lab.specimens import service as specimens
from lab.tables.audit import AuditEvent
from lab.tables.catalog import LabTest
from lab.tables.qc import QcMovingSetting
from testkit.orders import place
from tests.conftest import actor
from tests.qc.builders import T0, na_run, only_run

BIO = actor("technician")
LEGE = actor("physician")
ANALYSER = actor("instrument", "demo")


def test_status_lists_each_test_with_its_levels_and_lock(db: Session) -> None:
    na_run(db, 3.6, 0.0)
    found = {s.test_code: s for s in queries.status(db, instrument="demo")}
    assert set(found) == {"NA", "K", "KREA", "GLUK", "CRP", "HB"}
    assert found["NA"].state == "locked" and found["NA"].rule == "1-3s"
    assert found["K"].state == "in_control" and found["K"].rule == ""
    levels = {lv.level: lv for lv in found["NA"].levels}
    assert levels[1].material == "QC1-DEMO"
    assert (levels[1].mean, levels[1].sd) == (Decimal("140"), Decimal("1.2"))
    assert (levels[2].mean, levels[2].sd) == (Decimal("120"), Decimal("1.1"))
    assert "10x" in found["NA"].rules_applied


def test_chart_series_mark_rejected_points_and_leave_them_out_of_the_statistics(
    db: Session,
) -> None:
    for minute, z in enumerate([0.5, -0.5, 1.0, -1.0]):
        only_run(na_run(db, z, 0.0, minute=minute))
    bad = only_run(na_run(db, 3.5, 0.1, minute=10))
    lot = lot_for_control(db, instrument="demo", control_id="QC1-DEMO")
    assert lot is not None
    series = queries.chart_series(db, instrument="demo", test_code="NA", lot_id=lot.id)
    assert series.level == 1 and series.mean == 140.0 and series.sd == 1.2
    assert [p.rejected for p in series.points] == [False] * 4 + [True]
    assert series.points[-1].run_id == bad.id and series.points[-1].rules == ("1-2s", "1-3s")
    assert series.accepted is not None and series.accepted.n == 4
    assert series.accepted.mean == pytest.approx(140.0)
    lot2 = lot_for_control(db, instrument="demo", control_id="QC2-DEMO")
    assert lot2 is not None
    level2 = queries.chart_series(db, instrument="demo", test_code="NA", lot_id=lot2.id)
    assert level2.points[-1].rejected and level2.points[-1].rules == ()


def _verified_na(db: Session, placer: str, value: str, at: datetime, instrument: str) -> int:
    order = place(db, BIO, placer=placer, tests=["NA"])
    number = next(s.accession_number for s in specimens.tubes_of_order(db, order.id))
    specimens.receive(db, actor=BIO, number=number)
    outcome = results.record(
        db,
        actor=ANALYSER,
        measurement=Measurement(
            accession_number=number,
            test_code="NA",
            value=value,
            instrument=instrument,
            observed_at=at,
        ),
    )
    results.verify(db, actor=LEGE, result_id=outcome.result_id)
    return outcome.result_id


def test_look_back_lists_released_results_since_the_last_accepted_run(db: Session) -> None:
    only_run(na_run(db, 0.1, 0.2, minute=0))
    before = _verified_na(db, "LB-1", "141", T0 - timedelta(minutes=30), "demo")
    after = _verified_na(db, "LB-2", "139", T0 + timedelta(minutes=20), "demo/2")
    elsewhere = _verified_na(db, "LB-3", "139", T0 + timedelta(minutes=25), "other")
    na_run(db, 0.0, -3.2, minute=60)
    found = queries.look_back(db, actor=LEGE, instrument="demo", test_code="NA")
    assert found.since == T0
    assert [r.result_id for r in found.results] == [after]
    assert before not in [r.result_id for r in found.results]
    assert elsewhere not in [r.result_id for r in found.results]
    reads = db.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "read.result", AuditEvent.entity_id == str(after)
        )
    ).all()
    assert reads and "look-back" in reads[-1].detail
    assert queries.look_back(db, actor=LEGE, instrument="demo", test_code="K").results == []


# --- patient-based QC ---------------------------------------------------------------------------

SETTINGS = moving.MovingSettings(
    statistic=moving.Statistic.MEAN,
    block_size=5,
    truncation_low=130,
    truncation_high=150,
    control_low=138,
    control_high=142,
)


def test_moving_mean_leaves_out_truncated_values_and_alarms_on_drift() -> None:
    values = [140, 141, 139, 160, 140, 140, 125, 143, 144, 145, 146, 147]
    series = moving.moving_series(values, SETTINGS)
    assert series.truncated == 2 and series.included == 10
    assert series.points[0].value == pytest.approx(140.0)
    assert series.points[0].index == 5  # the fifth included value is at position 5
    assert series.state is moving.MovingState.ALARM
    assert series.current == pytest.approx(statistics.fmean([144, 145, 146, 147, 143]))


def test_moving_median_and_too_little_data() -> None:
    median = dataclasses.replace(SETTINGS, statistic=moving.Statistic.MEDIAN)
    series = moving.moving_series([140, 141, 139, 150, 138], median)
    assert series.current == 140 and series.state is moving.MovingState.IN_CONTROL
    assert moving.moving_series([140, 141], SETTINGS).state is moving.MovingState.NO_DATA


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(SETTINGS, block_size=1)
    with pytest.raises(ValueError):
        dataclasses.replace(SETTINGS, control_low=150)


@given(st.lists(st.floats(min_value=100, max_value=180), max_size=80))
def test_moving_statistic_stays_within_the_truncation_limits(values: list[float]) -> None:
    series = moving.moving_series(values, SETTINGS)
    assert series.included + series.truncated == len(values)
    assert len(series.points) == max(0, series.included - SETTINGS.block_size + 1)
    for point in series.points:
        assert SETTINGS.truncation_low - 1e-9 <= point.value <= SETTINGS.truncation_high + 1e-9
        assert point.alarm == (not 138 <= point.value <= 142)


def test_moving_status_from_patient_results_on_the_analyser(db: Session) -> None:
    test_id = db.scalar(select(LabTest.id).where(LabTest.code == "NA"))
    assert test_id is not None
    db.add(
        QcMovingSetting(
            instrument="demo",
            test_id=test_id,
            statistic="mean",
            block_size=3,
            truncation_low=Decimal(130),
            truncation_high=Decimal(150),
            target=Decimal(140),
            control_low=Decimal(138),
            control_high=Decimal(142),
        )
    )
    db.flush()
    at = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    for i, value in enumerate(["144", "145", "125", "146"]):
        _verified_na(db, f"MA-{i}", value, at + timedelta(minutes=i), "demo")
    status = queries.moving_status(db, instrument="demo", test_id=test_id)
    assert status is not None and status.state == "alarm"
    assert status.current == pytest.approx(145.0)
    (na,) = [s for s in queries.status(db, instrument="demo") if s.test_code == "NA"]
    assert na.moving is not None and na.moving.state == "alarm"
    assert qc.is_locked(db, instrument="demo", test_code="NA") is False
