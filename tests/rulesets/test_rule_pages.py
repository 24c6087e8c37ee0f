"""The rule set pages: list every version, load a draft (refused with its lines), dry-run a
formula or reflex version on stored results, activate (lab physician only), all audited and in
the page's language."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.results import service as results
from lab.results.service import Measurement
from lab.rules.demo import demo_texts
from lab.specimens import service as specimens
from lab.tables import AuditEvent
from lab.tables.rulesets import RuleSetVersion
from lab.users.roles import Role
from testkit.orders import place
from tests.conftest import actor
from tests.web.support import csrf_of, sign_in

BIO = actor(Role.TECHNICIAN)
ANALYSER = actor(Role.INSTRUMENT, "cobas-1")


def _tsh(db: Session, value: str) -> None:
    order = place(db, BIO, placer=f"RPG-{value}", tests=["TSH"])
    number = next(s.accession_number for s in specimens.tubes_of_order(db, order.id))
    specimens.receive(db, actor=BIO, number=number)
    results.record(
        db,
        actor=ANALYSER,
        measurement=Measurement(
            accession_number=number,
            test_code="TSH",
            value=value,
            instrument="cobas-1",
            observed_at=datetime(2026, 11, 27, 8, 0, tzinfo=UTC),
        ),
    )
    db.flush()


def test_a_technician_may_not_see_the_rule_pages(client: TestClient) -> None:
    sign_in(client, "t-technician")
    assert client.get("/rules").status_code == 403
    assert client.get("/rules/reflex/1").status_code == 403


def test_rule_pages_list_load_dry_run_and_activate(client: TestClient, db: Session) -> None:
    csrf = sign_in(client, "t-admin")
    page = client.get("/rules")
    assert page.status_code == 200
    assert "Refleksregler" in page.text and "Formler (beregnede analyser)" in page.text
    assert 'href="/rules/reflex/1"' in page.text and "utkast" in page.text

    refused = client.post(
        "/rules/load",
        data={"csrf_token": csrf, "kind": "reflex", "text": "[[reflex]]\nid = 1\n"},
    )
    assert refused.status_code == 422 and "Avvist:" in refused.text and "line" in refused.text
    assert "[[reflex]]" in refused.text  # what was typed is kept

    loaded = client.post(
        "/rules/load",
        data={
            "csrf_token": csrf,
            "kind": "reflex",
            "text": demo_texts()["reflex"],
            "description": "same as v1",
        },
        follow_redirects=False,
    )
    assert loaded.status_code == 303 and loaded.headers["location"] == "/rules/reflex/2"

    _tsh(db, "9.5")
    _tsh(db, "2.0")
    shown = client.get("/rules/reflex/2")
    assert shown.status_code == 200 and "TSH-FT4" in shown.text
    dry = client.post("/rules/reflex/2/dry-run", data={"csrf_token": csrf_of(shown.text)})
    assert dry.status_code == 200
    section = dry.text.split('id="dry-run"')[1]
    assert "Ville lagt til FT4" in section and "-&gt; adds FT4 (TSH-FT4)" in section

    # Activation is the lab physician's: the administrator is refused, nothing changes.
    refused = client.post("/rules/reflex/2/state", data={"csrf_token": csrf, "state": "active"})
    assert refused.status_code == 403
    client.cookies.clear()
    csrf = sign_in(client, "t-physician")
    done = client.post(
        "/rules/reflex/2/state",
        data={"csrf_token": csrf, "state": "active"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    db.expire_all()
    states = {
        row.version: row.state
        for row in db.scalars(select(RuleSetVersion).where(RuleSetVersion.kind == "reflex"))
    }
    assert states == {1: "draft", 2: "active"}
    actions = set(
        db.scalars(
            select(AuditEvent.action).where(AuditEvent.entity_type == "rule_set_version")
        ).all()
    )
    assert {"ruleset.load", "ruleset.dry_run", "ruleset.active"} <= actions
