"""Finding a patient by name as people type it: either order, with a comma, any word."""

from __future__ import annotations

from sqlalchemy.orm import Session

from lab.patients import service as patients
from lab.patients.service import Demographics, IdentifierInput
from lab.users.roles import Role
from tests.conftest import actor

IFACE = actor(Role.INTERFACE)
LEGE = actor(Role.PHYSICIAN)


def _patient(db: Session, family: str, given: str, ident: str) -> int:
    patient = patients.upsert(
        db,
        actor=IFACE,
        data=Demographics(
            identifiers=[IdentifierInput(value=ident, authority="STOLAV")],
            family_name=family,
            given_name=given,
        ),
    )
    return patient.id


def _names(db: Session, text: str) -> set[str]:
    return {f"{p.given_name} {p.family_name}" for p in patients.search(db, actor=LEGE, text=text)}


def test_names_as_people_type_them(db: Session) -> None:
    _patient(db, "Johansen", "Bjørn", "PAS-1")
    _patient(db, "Johansen", "Anne", "PAS-2")
    _patient(db, "Hansen-Berg", "Eli Marie", "PAS-3")
    _patient(db, "Bjørnstad", "Kari", "PAS-4")
    assert _names(db, "Bjørn Johansen") == {"Bjørn Johansen"}
    assert _names(db, "johansen bjørn") == {"Bjørn Johansen"}
    assert _names(db, "johansen, b") == {"Bjørn Johansen"}
    assert _names(db, "Johansen,") == {"Bjørn Johansen", "Anne Johansen"}
    assert _names(db, "berg") == {"Eli Marie Hansen-Berg"}
    assert _names(db, "marie") == {"Eli Marie Hansen-Berg"}
    # "bjørn" begins a given name and a family name; a comma says which is which.
    assert _names(db, "bjørn") == {"Bjørn Johansen", "Kari Bjørnstad"}
    assert _names(db, "bjørn,") == {"Kari Bjørnstad"}
    assert _names(db, "ohansen") == set()  # the start of a word, not any substring
    assert _names(db, "PAS-3") == {"Eli Marie Hansen-Berg"}


def test_wildcards_typed_are_letters(db: Session) -> None:
    _patient(db, "Olsen", "Per", "PAS-5")
    assert _names(db, "%sen") == set()
    assert _names(db, "ol_en") == set()
