"""The recording path reads the rule set in force from the database: with no active version
nothing is released without a person; with the demo rules active (the `demo_rules` fixture)
results are judged, autoverified, calculated and reflexed by them; a version in shadow decides
beside the active one, its decisions are kept and shown, and it releases nothing."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.catalog.rules import snapshot
from lab.patients.service import Demographics, IdentifierInput
from lab.results import service as results
from lab.results.queries import results_of_tube, stored
from lab.results.service import Measurement
from lab.rules.demo import demo_texts
from lab.rulesets import service as rulesets
from lab.rulesets.service import ActiveRules
from lab.specimens import service as specimens
from lab.tables import OrderedTest, Result
from lab.tables.rulesets import RuleShadowDecision
from lab.users.roles import Role
from testkit.orders import place
from tests.conftest import actor

BIO = actor(Role.TECHNICIAN)
ANALYSER = actor(Role.INSTRUMENT, "cobas-1")
ADMIN = actor(Role.ADMIN)
AT = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
_numbers = itertools.count(1)
# Version 2: sodium's plausibility limits narrowed so far that an ordinary 140 is held.
NARROW_NA = demo_texts()["autoverification"].replace(
    "plausible = { low = 80, high = 200 }", "plausible = { low = 145, high = 200 }"
)


def tube(db: Session, tests: list[str], born: date = date(1970, 5, 1), sex: str = "F") -> str:
    who = Demographics(
        identifiers=[IdentifierInput(value=f"AR{next(_numbers):06d}", authority="HP-LOCAL")],
        family_name="Regelsen",
        given_name="Rita",
        birth_date=born,
        sex=sex,
    )
    order = place(db, BIO, placer=f"AR-{next(_numbers)}", tests=tests, patient=who)
    number = next(s.accession_number for s in specimens.tubes_of_order(db, order.id))
    specimens.receive(db, actor=BIO, number=number)
    return number


def measure(number: str, code: str, value: str) -> Measurement:
    return Measurement(
        accession_number=number,
        test_code=code,
        value=value,
        instrument="cobas-1",
        observed_at=AT,
        flag_profile="cobas",
        instrument_flags="N",
    )


def by_code(db: Session, number: str) -> dict[str, Result]:
    codes = snapshot(db).by_id
    return {
        codes[r.test_id].code: r
        for r in results_of_tube(db, specimens.get_by_accession(db, number))
    }


def test_without_an_active_rule_set_a_person_verifies_everything(db: Session) -> None:
    number = tube(db, ["NA"])
    result = stored(
        db, results.record(db, actor=ANALYSER, measurement=measure(number, "NA", "140"))
    )
    assert result.status == "awaiting_review" and result.verified_by is None
    assert result.ruleset_version is None and result.holds == []


def test_the_active_rule_set_in_the_database_decides(db: Session, demo_rules: ActiveRules) -> None:
    number = tube(db, ["NA", "KREA", "TSH"])
    for code, value in (("NA", "140"), ("KREA", "80"), ("TSH", "9.5")):
        results.record(db, actor=ANALYSER, measurement=measure(number, code, value))
    found = by_code(db, number)
    assert found["NA"].status == "verified"
    assert found["NA"].verified_by == "autoverification v1" and found["NA"].ruleset_version == 1
    # The demo formulas: eGFR with the creatinine (woman of 56, 80 umol/L), released with it.
    assert found["KREA"].status == found["EGFR"].status == "verified"
    assert found["EGFR"].value_numeric is not None and 70 < found["EGFR"].value_numeric < 90
    # The demo reflex: TSH above its interval (flagged, released: the demo rules hold no
    # result for being outside its interval) adds FT4 to the tube.
    assert found["TSH"].flags == ["H"] and found["TSH"].status == "verified"
    added = {
        t.test_id: t.added_by_rule
        for t in db.scalars(
            select(OrderedTest).where(
                OrderedTest.specimen_id == specimens.get_by_accession(db, number).id
            )
        )
    }
    ft4 = snapshot(db).by_code["FT4"].id
    assert added[ft4].startswith("reflex TSH-FT4 (reflex set v1)")
    # No version runs in shadow: nothing is kept beside the results.
    assert db.scalars(select(RuleShadowDecision)).all() == []


def test_a_version_in_shadow_decides_beside_the_active_one_and_releases_nothing(
    db: Session, demo_rules: ActiveRules, client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    rulesets.load(db, actor=ADMIN, kind="autoverification", document=NARROW_NA)
    rulesets.change_state(db, actor=ADMIN, kind="autoverification", version=2, state="shadow")
    in_force = rulesets.active_rules(db)
    assert in_force.autoverification is not None and in_force.autoverification.version == 1
    assert in_force.shadow is not None and in_force.shadow.version == 2
    number = tube(db, ["NA", "K"])
    for code, value in (("NA", "140"), ("K", "4.1")):
        results.record(db, actor=ANALYSER, measurement=measure(number, code, value))
    db.flush()
    found = by_code(db, number)
    # The active version released both; the shadow version would have held the sodium.
    assert found["NA"].status == found["K"].status == "verified"
    assert found["NA"].verified_by == "autoverification v1"
    decisions = {
        d.result_id: d
        for d in db.scalars(
            select(RuleShadowDecision).where(
                RuleShadowDecision.result_id.in_([found["NA"].id, found["K"].id])
            )
        )
    }
    na, k = decisions[found["NA"].id], decisions[found["K"].id]
    assert (na.result_version, na.autoverify) == (1, False)
    assert [hold["code"] for hold in na.holds] == ["plausibility"]
    assert (k.result_version, k.autoverify, k.holds) == (1, True, [])

    # Shown through the API, beside what the active version did (codes, no values).
    assert (
        client.get(
            "/api/v1/rules/autoverification/2/shadow", headers=as_role["technician"]
        ).status_code
        == 403
    )
    shown = client.get("/api/v1/rules/autoverification/2/shadow", headers=as_role["physician"])
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["state"] == "shadow" and body["decided"] >= 2
    rows = {row["result_id"]: row for row in body["decisions"]}
    assert rows[found["NA"].id]["disagreement"] == "shadow_held_active_released"
    assert rows[found["NA"].id]["shadow_holds"] == ["plausibility"]
    assert rows[found["NA"].id]["active_release"] is True
    assert rows[found["K"].id]["disagreement"] is None
    assert body["disagreements"].get("shadow_held_active_released", 0) >= 1
    # The disagreements come first in the list.
    assert body["decisions"][0]["disagreement"] is not None
