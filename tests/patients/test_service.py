"""Patients: identity validated, demographics updated, merges that keep everything."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab import audit
from lab.errors import Conflict, InvalidInput
from lab.patients import service as patients
from lab.patients.service import Demographics, IdentifierInput
from lab.results import service as results
from lab.results.queries import stored
from lab.specimens import service as specimens
from lab.tables import PatientMerge
from lab.users.roles import Role
from testkit.orders import place
from testkit.patients import KARI_FNR, OLA_FNR, kari, national_number
from tests.conftest import actor

IFACE = actor(Role.INTERFACE)
LEGE = actor(Role.PHYSICIAN)


def test_register_fills_birth_date_and_sex_from_the_fnr(db: Session) -> None:
    patient = patients.upsert(db, actor=IFACE, data=kari())
    assert patient.birth_date == date(1984, 3, 15) and patient.sex == "F"
    assert patient.family_name == "Østbø" and patient.given_name == "Kari Åse"
    same = patients.upsert(
        db,
        actor=IFACE,
        data=Demographics(
            identifiers=[IdentifierInput(value=KARI_FNR, authority="2.16.578.1.12.4.1.4.1")],
            family_name="Østbø-Ŋuolja",
            given_name="Kari Åse",
        ),
    )
    assert same.id == patient.id and same.family_name == "Østbø-Ŋuolja"


def test_other_identifiers_are_kept_as_they_are(db: Session) -> None:
    patient = patients.upsert(
        db,
        actor=IFACE,
        data=Demographics(
            identifiers=[IdentifierInput(value="PAS-00042", authority="STOLAV")],
            family_name="Áigin",
            given_name="Biret Márjá",
        ),
    )
    assert [(i.authority, i.value, i.kind) for i in patient.identifiers] == [
        ("STOLAV", "PAS-00042", "OTHER")
    ]
    assert patients.find_by_identifier(db, "PAS-00042", "STOLAV") == patient


def test_invalid_numbers_are_refused_with_the_field(db: Session) -> None:
    bad = Demographics(
        identifiers=[
            IdentifierInput(value=KARI_FNR, authority="FNR"),
            IdentifierInput(value="12345678901", authority="FNR"),
        ],
        family_name="Østbø",
        birth_date=date(1990, 1, 1),
    )
    with pytest.raises(InvalidInput) as caught:
        patients.upsert(db, actor=IFACE, data=bad)
    fields = {p.field for p in caught.value.problems}
    assert fields == {"identifiers[1]", "birth_date"}
    d_number = national_number(date(1984, 3, 15), 300, d_number=True)
    with pytest.raises(InvalidInput, match="is a DNR"):
        patients.upsert(
            db,
            actor=IFACE,
            data=Demographics(
                identifiers=[IdentifierInput(value=d_number, authority="FNR")], family_name="X"
            ),
        )
    accepted = patients.upsert(
        db,
        actor=IFACE,
        data=Demographics(
            identifiers=[
                IdentifierInput(value=d_number, authority="DNR"),
                IdentifierInput(
                    value=national_number(date(2001, 5, 2), 700, h_number=True), authority="HNR"
                ),
            ],
            family_name="Gjest",
        ),
    )
    assert sorted(i.kind for i in accepted.identifiers) == ["DNR", "HNR"]


def test_merge_keeps_every_order_and_result(db: Session) -> None:
    first = place(db, IFACE, placer="M-1", tests=["NA"])
    duplicate = Demographics(
        identifiers=[IdentifierInput(value=OLA_FNR, authority="FNR")], family_name="Østbø"
    )
    second = place(db, IFACE, placer="M-2", tests=["CRP"], patient=duplicate)
    tube = specimens.tubes_of_order(db, second.id)[0]
    specimens.receive(db, actor=IFACE, number=tube.accession_number)
    outcome = results.record(
        db,
        actor=IFACE,
        measurement=results.Measurement(
            accession_number=tube.accession_number, test_code="CRP", value="12"
        ),
    )
    keep, gone = first.patient_id, second.patient_id
    merged = patients.merge(
        db, actor=LEGE, surviving_patient_id=keep, merged_patient_id=gone, reason="same person"
    )
    assert merged.moved_orders == 1 and merged.merged_by == "t-physician"
    db.refresh(second)
    db.refresh(stored(db, outcome))
    assert second.patient_id == keep and stored(db, outcome).patient_id == keep
    # The merged patient's number now finds the surviving patient.
    found = patients.find_by_identifier(db, OLA_FNR, "FNR")
    assert found is not None and found.id == keep
    assert db.scalar(select(PatientMerge).where(PatientMerge.merged_patient_id == gone))
    trail = {e.action for e in audit.events_for_patient(db, gone)}
    assert "patient.merge" in trail
    with pytest.raises(Conflict, match="already merged"):
        patients.merge(db, actor=LEGE, surviving_patient_id=keep, merged_patient_id=gone)
    with pytest.raises(InvalidInput):
        patients.merge(db, actor=LEGE, surviving_patient_id=keep, merged_patient_id=keep)


def test_search_audits_each_patient_found(db: Session) -> None:
    patient = patients.upsert(db, actor=IFACE, data=kari())
    found = patients.search(db, actor=LEGE, text="østb")
    assert patient in found
    reads = [e for e in audit.events_for_patient(db, patient.id) if e.action.startswith("read.")]
    assert reads and reads[0].actor_name == "t-physician"
    with pytest.raises(InvalidInput):
        patients.search(db, actor=LEGE, text="ø")
