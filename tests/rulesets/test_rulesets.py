"""Rule set versions in the database: load, refuse, shadow, activate (role-checked, audited),
immutable texts, and replay over stored results giving the same figures twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from lab.audit import AuditEvent
from lab.errors import PermissionDenied
from lab.results import judging as results_judging
from lab.results import service as results
from lab.results.service import Measurement
from lab.rules import RuleSet, RuleSetError
from lab.rules.demo import demo_texts
from lab.rulesets import service
from lab.rulesets.replay import replay
from lab.rulesets.service import ActiveRules
from lab.specimens import service as specimens
from lab.tables.rulesets import RuleKind, RuleSetVersion
from lab.users.roles import Role
from testkit.orders import place
from tests.conftest import actor

BIO = actor(Role.TECHNICIAN)
ANALYSER = actor(Role.INSTRUMENT, "cobas-1")
LEGE = actor(Role.PHYSICIAN)
ADMIN = actor(Role.ADMIN)

V2 = demo_texts()["autoverification"].replace(
    "plausible = { low = 80, high = 200 }", "plausible = { low = 100, high = 180 }"
)


def test_the_test_database_keeps_the_demo_rules_as_drafts(db: Session) -> None:
    rows = service.list_versions(db)
    assert {(row.kind, row.version, row.state) for row in rows} == {
        ("autoverification", 1, "draft"),
        ("formulas", 1, "draft"),
        ("reflex", 1, "draft"),
    }
    assert service.active_rules(db) == ActiveRules()
    assert results_judging.active_rules(db) == results_judging.NO_RULES


def test_the_demo_rules_fixture_activates_version_1_of_each_kind(
    db: Session, demo_rules: ActiveRules
) -> None:
    rows = service.list_versions(db)
    assert {(row.kind, row.version, row.state) for row in rows} == {
        ("autoverification", 1, "active"),
        ("formulas", 1, "active"),
        ("reflex", 1, "active"),
    }
    loaded = service.active(db, kind=RuleKind.AUTOVERIFICATION)
    assert loaded is not None and isinstance(loaded.parsed, RuleSet) and loaded.version == 1
    assert demo_rules.autoverification is not None and demo_rules.shadow is None
    assert results_judging.active_rules(db) == demo_rules


def test_a_bad_document_is_refused_with_its_line_and_nothing_is_stored(db: Session) -> None:
    with pytest.raises(RuleSetError) as caught:
        service.load(
            db, actor=ADMIN, kind="autoverification", document="[test.NOPE]\nautoverify = true\n"
        )
    assert caught.value.problems[0].field == "line 1"
    assert [row.version for row in service.list_versions(db, kind="autoverification")] == [1]


def test_load_shadow_activate_with_roles_and_audit(db: Session, demo_rules: ActiveRules) -> None:
    row = service.load(db, actor=ADMIN, kind="autoverification", document=V2, description="v2")
    assert (row.version, row.state) == (2, "draft")
    service.change_state(db, actor=ADMIN, kind="autoverification", version=2, state="shadow")
    shadow = service.shadow(db, kind=RuleKind.AUTOVERIFICATION)
    assert shadow is not None and shadow.version == 2
    in_shadow = service.shadow_rules(db)
    assert in_shadow.autoverification is not None and in_shadow.autoverification.version == 2
    assert in_shadow.formulas is None and set(in_shadow.ids) == {"autoverification"}
    in_force = service.active_rules(db)
    assert in_force.autoverification is not None and in_force.autoverification.version == 1
    assert in_force.formulas is not None and "EGFR" in in_force.formulas.formulas
    assert in_force.reflex is not None and in_force.reflex.version == 1
    with pytest.raises(PermissionDenied):
        service.change_state(db, actor=ADMIN, kind="autoverification", version=2, state="active")
    with pytest.raises(PermissionDenied):
        service.change_state(db, actor=BIO, kind="autoverification", version=2, state="shadow")
    service.change_state(db, actor=LEGE, kind="autoverification", version=2, state="active")
    states = {row.version: row.state for row in service.list_versions(db, kind="autoverification")}
    assert states == {1: "retired", 2: "active"}
    current = service.active(db, kind=RuleKind.AUTOVERIFICATION)
    assert current is not None and current.version == 2
    assert service.shadow(db, kind=RuleKind.AUTOVERIFICATION) is None
    actions = list(
        db.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.entity_type == "rule_set_version")
            .order_by(AuditEvent.id)
        )
    )
    assert actions[-4:] == ["ruleset.load", "ruleset.shadow", "ruleset.retired", "ruleset.active"]
    activated = db.scalar(
        select(RuleSetVersion).where(
            RuleSetVersion.version == 2, RuleSetVersion.kind == "autoverification"
        )
    )
    assert activated is not None and activated.activated_by == LEGE.username


def test_a_version_never_changes_and_is_never_deleted(db: Session) -> None:
    db.flush()
    with pytest.raises(DBAPIError, match="never changes"), db.begin_nested():
        db.execute(text("UPDATE rule_set_version SET text = 'x' WHERE version = 1"))
    with pytest.raises(DBAPIError, match="never deleted"), db.begin_nested():
        db.execute(text("DELETE FROM rule_set_version"))


def _history(db: Session) -> list[int]:
    """A small seeded history: results people verified, corrected and left waiting."""
    order = place(db, BIO, placer="RP-1", tests=["NA", "K", "KREA"])
    number = next(
        s.accession_number for s in specimens.tubes_of_order(db, order.id) if s.container == "SERUM"
    )
    specimens.receive(db, actor=BIO, number=number)
    at = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    ids = []
    for code, value in (("NA", "140"), ("K", "4.1"), ("KREA", "80")):
        outcome = results.record(
            db,
            actor=ANALYSER,
            measurement=Measurement(
                accession_number=number,
                test_code=code,
                value=value,
                instrument="cobas-1",
                observed_at=at + timedelta(minutes=len(ids)),
            ),
        )
        ids.append(outcome.result_id)
    results.verify(db, actor=LEGE, result_id=ids[0])
    results.verify(db, actor=LEGE, result_id=ids[1])
    results.correct(db, actor=LEGE, result_id=ids[1], value="3.1", reason="wrong tube")
    db.flush()
    return ids


def test_replay_counts_and_disagreements_same_figures_twice(db: Session) -> None:
    na, k, krea = _history(db)
    first = replay(db, version=1)
    second = replay(db, version=1)
    assert first.report_lines() == second.report_lines()
    assert first.judged >= 3
    found = {finding.result_id: finding.disagreement.value for finding in first.findings}
    assert found.get(k) == "released_but_corrected"
    assert found.get(krea) == "released_but_not_verified"
    assert na not in found


def test_dry_runs_of_formulas_and_reflexes(db: Session, demo_rules: ActiveRules) -> None:
    from lab.rulesets.replay import dry_run

    assert demo_rules.formulas is not None
    order = place(db, BIO, placer="RP-2", tests=["KREA", "TSH"])
    number = next(
        s.accession_number for s in specimens.tubes_of_order(db, order.id) if s.container == "SERUM"
    )
    specimens.receive(db, actor=BIO, number=number)
    at = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    for code, value in (("KREA", "80"), ("TSH", "9.5")):
        results.record(
            db,
            actor=ANALYSER,
            measurement=Measurement(
                accession_number=number,
                test_code=code,
                value=value,
                instrument="cobas-1",
                observed_at=at,
            ),
        )
    db.flush()
    formulas = dry_run(db, kind="formulas", version=1)
    assert formulas.produced["EGFR"] >= 1
    assert any(line.startswith("specimen") and "EGFR" in line for line in formulas.sample)
    reflexes = dry_run(db, kind="reflex", version=1)
    assert reflexes.produced["FT4"] >= 1
    assert dry_run(db, kind="reflex", version=1).report_lines() == reflexes.report_lines()


def test_creatinine_and_glucose_go_by_moles_codes_and_old_codes_still_order_them(
    db: Session,
) -> None:
    from lab.catalog.service import resolve_test

    assert resolve_test(db, code="14682-9", system="LN").code == "KREA"
    assert resolve_test(db, code="2160-0", system="LN").code == "KREA"
    assert resolve_test(db, code="14749-6", system="LN").code == "GLUK"
    assert resolve_test(db, code="2345-7", system="LN").code == "GLUK"


def test_a_rule_set_that_would_break_the_active_formulas_is_not_activated(
    db: Session, demo_rules: ActiveRules
) -> None:
    from lab.errors import Conflict

    without_limit = demo_texts()["autoverification"].replace(
        "plausible = { low = 5, high = 3000 }        # demo setting (umol/L)", ""
    )
    assert without_limit != demo_texts()["autoverification"]
    service.load(db, actor=ADMIN, kind="autoverification", document=without_limit)
    with pytest.raises(Conflict) as caught:
        service.change_state(db, actor=LEGE, kind="autoverification", version=2, state="active")
    assert "would break the active formulas v1" in caught.value.message
    assert "negative power of a value that can be zero" in caught.value.problems[0].message
    states = {row.version: row.state for row in service.list_versions(db, kind="autoverification")}
    assert states == {1: "active", 2: "draft"}
