"""Control results as the analyser path stores them (`qc_result`), for the QC tests."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.qc import service as qc
from lab.tables.instruments import QcResult
from lab.tables.qc import QcRun

# The demo targets (lab/qc/demo_qc.toml) by test and level: (mean, SD).
TARGETS = {"NA": {1: (140.0, 1.2), 2: (120.0, 1.1)}, "K": {1: (4.00, 0.06), 2: (6.50, 0.09)}}
CONTROL_IDS = {1: "QC1-DEMO", 2: "QC2-DEMO"}
T0 = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
ANALYSER = Actor(user_id=None, username="demo", roles=frozenset({"instrument"}), channel="astm")


def na_value(level: int, z: float, test_code: str = "NA") -> str:
    mean, sd = TARGETS[test_code][level]
    return f"{mean + z * sd:.4f}"


def control_result(
    session: Session,
    *,
    control_id: str,
    value: str,
    test_code: str | None = "NA",
    unit: str = "mmol/L",
    at: datetime = T0,
    instrument: str = "demo",
    status: str = "F",
) -> int:
    row = QcResult(
        fingerprint=secrets.token_hex(16),
        instrument=instrument,
        control_id=control_id,
        instrument_test_code=test_code or "XX",
        test_code=test_code,
        value=value,
        unit=unit,
        instrument_flags="",
        result_status=status,
        operator="",
        observed_at=at,
        raw_record=f"R|1|^^^{test_code}|{value}|{unit}",
    )
    session.add(row)
    session.flush()
    return row.id


def na_run(
    session: Session,
    *zs: float | None,
    minute: int = 0,
    instrument: str = "demo",
    test_code: str = "NA",
) -> qc.IntakeOutcome:
    """One ASTM message with NA controls at these z-scores by level (None: level not sent)."""
    at = T0 + timedelta(minutes=minute)
    ids = [
        control_result(
            session,
            control_id=CONTROL_IDS[level],
            value=na_value(level, z, test_code),
            at=at,
            instrument=instrument,
            test_code=test_code,
        )
        for level, z in enumerate(zs, start=1)
        if z is not None
    ]
    return qc.take_analyser_results(
        session, actor=ANALYSER, instrument=instrument, qc_result_ids=ids
    )


def only_run(outcome: qc.IntakeOutcome) -> QcRun:
    assert not outcome.problems, [p.reason for p in outcome.problems]
    (run,) = outcome.runs
    return run
