"""Patient-based QC alarms: the scheduled check stores an alarm when the moving mean drifts out
of its control limits (once, audited), shows it with the Westgard state, and clears it when the
mean is back; a setting for every analyser is applied to each analyser that measured the test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.qc import moving_alarms, queries
from lab.qc.runtime import check_once
from lab.tables.audit import AuditEvent
from lab.tables.catalog import LabTest
from lab.tables.qc import ANY_ANALYSER, QcMovingAlarm, QcMovingSetting
from tests.qc.test_queries import _verified_na

AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def na_setting(db: Session, instrument: str) -> int:
    test_id = db.scalar(select(LabTest.id).where(LabTest.code == "NA"))
    assert test_id is not None
    db.add(
        QcMovingSetting(
            instrument=instrument,
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
    return test_id


def alarms(db: Session, test_id: int) -> list[QcMovingAlarm]:
    return list(
        db.scalars(
            select(QcMovingAlarm).where(QcMovingAlarm.test_id == test_id).order_by(QcMovingAlarm.id)
        )
    )


def test_a_drift_is_stored_once_shown_and_cleared(
    db: Session, client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    test_id = na_setting(db, "demo")
    for i, value in enumerate(["140", "139", "141"]):
        _verified_na(db, f"MV-{i}", value, AT + timedelta(minutes=i), "demo")
    assert moving_alarms.check(db, now=AT + timedelta(minutes=5)) == []
    assert alarms(db, test_id) == []
    # The method drifts upwards: the mean of the last three leaves 138-142.
    for i, value in enumerate(["145", "146", "144"]):
        _verified_na(db, f"MV-up-{i}", value, AT + timedelta(minutes=10 + i), "demo")
    (raised,) = moving_alarms.check(db, now=AT + timedelta(minutes=15))
    assert (raised.instrument, raised.test_code, raised.raised) == ("demo", "NA", True)
    assert raised.value == 145.0
    # Checked again while it still drifts: no second alarm.
    assert moving_alarms.check(db, now=AT + timedelta(minutes=16)) == []
    (stored,) = alarms(db, test_id)
    assert stored.cleared_at is None and stored.value == 145.0
    status = next(s for s in queries.status(db, instrument="demo") if s.test_code == "NA")
    assert status.moving is not None and status.moving.alarm_since == AT + timedelta(minutes=15)
    shown = client.get("/api/v1/qc/status?instrument=demo", headers=as_role["technician"])
    na = next(t for t in shown.json()["tests"] if t["test"] == "NA")
    assert na["state"] == "in_control" and na["moving"]["state"] == "alarm"
    assert na["moving"]["alarm_value"] == 145.0 and na["moving"]["alarm_since"] is not None
    # The QC page shows the stored alarm beside the Westgard state, with its time and figures,
    # in both languages; the overview and the worklist show it beside the QC locks.
    since = "30.11.2026 10:15"  # the lab's time (Oslo) of AT + 15 minutes
    technician = as_role["technician"]
    english = client.get("/qc?instrument=demo&lang=en", headers=technician).text
    assert "Patient-based alarm" in english and f"since {since}" in english
    assert "moving mean 145.0 outside the control limits 138–142 (block of 3 results)" in english
    norwegian = client.get("/qc?instrument=demo&lang=nb", headers=technician).text
    assert "Pasientbasert alarm" in norwegian and f"siden {since}" in norwegian
    assert "glidende gjennomsnitt 145,0 utenfor kontrollgrensene 138–142" in norwegian
    for path in ("/?lang=en", "/worklist?lang=en"):
        shown = client.get(path, headers=technician).text
        assert "Patient-based QC: alarm" in shown, path
        assert f"<strong>NA</strong> on demo: since {since}: moving mean 145.0" in shown, path
    # Back in control: the alarm is cleared.
    for i, value in enumerate(["140", "140", "140"]):
        _verified_na(db, f"MV-back-{i}", value, AT + timedelta(minutes=20 + i), "demo")
    (cleared,) = moving_alarms.check(db, now=AT + timedelta(minutes=25))
    assert cleared.raised is False and cleared.value == 140.0
    (stored,) = alarms(db, test_id)
    assert stored.cleared_at == AT + timedelta(minutes=25) and stored.cleared_value == 140.0
    actions = db.scalars(
        select(AuditEvent.action)
        .where(AuditEvent.entity_type == "qc_moving_alarm")
        .order_by(AuditEvent.id)
    ).all()
    assert list(actions) == ["qc.moving.alarm", "qc.moving.clear"]


def test_a_setting_for_every_analyser_is_checked_on_each(db: Session) -> None:
    test_id = na_setting(db, ANY_ANALYSER)
    now = datetime.now(UTC)
    for i, value in enumerate(["145", "146", "147"]):
        _verified_na(db, f"MA-a-{i}", value, now - timedelta(minutes=10 - i), "cobas-a/1")
    for i, value in enumerate(["140", "141", "139"]):
        _verified_na(db, f"MA-b-{i}", value, now - timedelta(minutes=10 - i), "cobas-b")
    changes = moving_alarms.check(db, now=now)
    assert [(c.instrument, c.raised) for c in changes] == [("cobas-a", True)]
    assert [a.instrument for a in alarms(db, test_id)] == ["cobas-a"]


def test_the_scheduled_check_runs_in_its_own_transaction(session_factory) -> None:  # type: ignore[no-untyped-def]
    # No moving setting in the test database: nothing to raise, and it commits cleanly.
    assert check_once(session_factory) == 0
