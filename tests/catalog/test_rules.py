"""The process-wide catalog cache: fresh after a committed change, never poisoned by one that
has not committed (and may roll back)."""

from __future__ import annotations

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from lab.catalog.rules import bump_version, snapshot
from lab.tables import LabTest


def test_an_uncommitted_change_is_seen_only_by_its_own_transaction(
    db: Session, engine: Engine
) -> None:
    before = snapshot(db).by_code["CRP"].turnaround_minutes
    db.execute(update(LabTest).where(LabTest.code == "CRP").values(turnaround_minutes=5))
    bump_version(db)
    assert snapshot(db).by_code["CRP"].turnaround_minutes == 5
    # Another transaction, at the same moment, still sees the committed catalog...
    with Session(engine) as other:
        assert snapshot(other).by_code["CRP"].turnaround_minutes == before
    db.rollback()
    # ...and after the rollback nobody sees the change, this session included.
    assert snapshot(db).by_code["CRP"].turnaround_minutes == before
    with Session(engine) as other:
        assert snapshot(other).by_code["CRP"].turnaround_minutes == before


def test_a_transaction_reads_one_catalog(db: Session) -> None:
    first = snapshot(db)
    assert snapshot(db) is first  # one version check per transaction
    assert {"BLODSTATUS", "ELKREA"} <= first.panels.keys()
    assert first.by_loinc["2823-3"].code == "K"
