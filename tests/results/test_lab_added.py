"""A reflex test is told to the record as an order the lab added (ORU^R01, OBR-11 `G`), and
when the tube cannot serve it a new specimen is asked for (a new tube, OBR-11 `L`); both
messages pass hl7apy STRICT; a reflex never fires twice for the same result."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.catalog.rules import snapshot
from lab.hl7.codec.er7 import parse_message
from lab.hl7.codec.validation import validate_strict
from lab.patients.service import Demographics, IdentifierInput
from lab.results import service as results
from lab.results.service import Measurement
from lab.rulesets import service as rulesets
from lab.rulesets.service import ActiveRules
from lab.specimens import service as specimens
from lab.tables import Hl7Message, OrderedTest, Result, Specimen
from lab.users.roles import Role
from testkit.orders import place
from tests.conftest import actor

BIO = actor(Role.TECHNICIAN)
ANALYSER = actor(Role.INSTRUMENT, "cobas-1")
LEGE = actor(Role.PHYSICIAN)
AT = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
_numbers = itertools.count(1)
# Reflex v2: a haemoglobin above 1 g/dL (every one) adds FT4, which an EDTA tube cannot serve.
HB_FT4 = """kind = "reflex"

[[reflex]]
id = "HB-FT4"
test = "HB"
when = "above"
value = 1
add = "FT4"
source = "test rule: a test on another kind of tube"
"""


def tube(db: Session, tests: list[str]) -> tuple[str, int]:
    who = Demographics(
        identifiers=[IdentifierInput(value=f"LA{next(_numbers):06d}", authority="HP-LOCAL")],
        family_name="Refleks",
        given_name="Rut",
        birth_date=date(1970, 5, 1),
        sex="F",
    )
    order = place(db, BIO, placer=f"LA-{next(_numbers)}", tests=tests, patient=who)
    number = next(s.accession_number for s in specimens.tubes_of_order(db, order.id))
    specimens.receive(db, actor=BIO, number=number)
    return number, order.id


def measure(number: str, code: str, value: str) -> Measurement:
    return Measurement(
        accession_number=number,
        test_code=code,
        value=value,
        instrument="cobas-1",
        observed_at=AT,
        flag_profile="cobas",
    )


def lab_added_messages(db: Session, order_id: int) -> list[str]:
    db.flush()
    rows = db.scalars(
        select(Hl7Message).where(Hl7Message.order_id == order_id).order_by(Hl7Message.id)
    ).all()
    texts = [row.raw.decode() for row in rows]
    return [t for t in texts if "|G|" in t or "|L|" in t]


def obr(text: str) -> dict[int, str]:
    message = parse_message(text.encode())
    segment = message.segment("OBR")
    assert segment is not None
    return {n: segment.field(n).text(1) for n in range(1, 26)}


def test_a_reflex_test_is_told_to_the_record_as_a_generated_order(
    db: Session, demo_rules: ActiveRules
) -> None:
    number, order_id = tube(db, ["TSH"])
    results.record(db, actor=ANALYSER, measurement=measure(number, "TSH", "9.5"))
    (text,) = lab_added_messages(db, order_id)
    validate_strict(text)
    fields = obr(text)
    assert fields[11] == "G" and fields[25] == "I"
    assert fields[4] == snapshot(db).by_code["FT4"].loinc
    assert "|OBX|" not in text and "\rOBX|" not in text
    assert "reflex TSH-FT4 on TSH" in text
    # The same result sent again (a repeat) adds nothing and tells nothing more.
    results.record(db, actor=ANALYSER, measurement=measure(number, "TSH", "9.5"))
    assert len(lab_added_messages(db, order_id)) == 1
    # A TSH inside its interval adds nothing and tells nothing.
    quiet, quiet_order = tube(db, ["TSH"])
    results.record(db, actor=ANALYSER, measurement=measure(quiet, "TSH", "2.0"))
    assert lab_added_messages(db, quiet_order) == []


def test_a_tube_that_cannot_serve_the_reflex_test_asks_for_a_new_specimen(
    db: Session, demo_rules: ActiveRules
) -> None:
    rulesets.load(db, actor=LEGE, kind="reflex", document=HB_FT4)
    rulesets.change_state(db, actor=LEGE, kind="reflex", version=2, state="active")
    number, order_id = tube(db, ["HB"])
    edta = specimens.get_by_accession(db, number)
    results.record(db, actor=ANALYSER, measurement=measure(number, "HB", "13.1"))
    ft4 = snapshot(db).by_code["FT4"]
    (added,) = db.scalars(
        select(OrderedTest).where(OrderedTest.order_id == order_id, OrderedTest.test_id == ft4.id)
    ).all()
    assert added.specimen_id != edta.id and added.added_by_rule.startswith("reflex HB-FT4")
    new = db.get(Specimen, added.specimen_id)
    assert new is not None and new.status == "expected"
    assert (new.specimen_type, new.container) == (ft4.specimen_type, ft4.container)
    (text,) = lab_added_messages(db, order_id)
    validate_strict(text)
    fields = obr(text)
    assert fields[11] == "L" and fields[25] == "O"
    assert new.accession_number in text and "a new" in text
    # A rerun of the haemoglobin (another value) does not ask again.
    results.record(db, actor=ANALYSER, measurement=measure(number, "HB", "13.4"))
    assert len(lab_added_messages(db, order_id)) == 1
    assert (
        len(
            db.scalars(
                select(OrderedTest).where(
                    OrderedTest.order_id == order_id, OrderedTest.test_id == ft4.id
                )
            ).all()
        )
        == 1
    )
    # A correction that no longer meets the condition cancels the test on the new tube.
    hb = next(
        r
        for r in db.scalars(select(Result).where(Result.specimen_id == edta.id))
        if r.test_id == snapshot(db).by_code["HB"].id
    )
    assert hb.status == "verified"
    results.correct(db, actor=LEGE, result_id=hb.id, value="0.9", reason="wrong sample")
    db.flush()
    db.refresh(added)
    assert added.status == "cancelled" and "reflex HB-FT4 withdrawn" in added.cancel_reason
