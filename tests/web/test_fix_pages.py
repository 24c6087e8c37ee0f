"""Fix before release on the pages: replace, rerun and discard from the review page (partial
updates) and from the result's page; refusals next to the form, in bokmål; roles."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.tables import AuditEvent, Result
from tests.web.support import accession_for, order, sign_in
from tests.web.test_result_pages import enter, received, result_ids

PARTIAL = {"X-Lab-Partial": "review"}


def test_replace_from_the_review_page_redraws_the_tube(client: TestClient, db: Session) -> None:
    number = accession_for(db, order(db, "HP-FX1", ["NA", "K"]), "SERUM")
    token = sign_in(client)  # a technician fixes what was typed wrong
    received(client, token, number)
    enter(client, token, number, NA="140", K="41")
    ids = result_ids(db, number)
    page = client.get("/review").text
    assert "Rett før godkjenning" in page
    # The queue carries a link per line; the forms come when the line's fix is opened.
    assert f'data-fix-form="/results/{ids["K"]}/fix-form"' in page
    assert f'href="/results/{ids["K"]}#fix"' in page
    forms = client.get(f"/results/{ids['K']}/fix-form")
    assert forms.status_code == 200 and "<html" not in forms.text
    assert f'action="/results/{ids["K"]}/replace"' in forms.text
    assert f'formaction="/results/{ids["K"]}/rerun"' in forms.text
    assert "/discard" not in forms.text  # discarding needs the right to verify
    refused = client.post(
        f"/results/{ids['K']}/replace",
        data={"csrf_token": token, "value": "4,1", "reason": " ", "back": "review"},
        headers=PARTIAL,
    )
    assert refused.status_code == 422 and "<html" not in refused.text
    assert "Skriv en begrunnelse." in refused.text and 'value="4,1"' in refused.text
    assert f'id="fix-{ids["K"]}" open' in refused.text
    done = client.post(
        f"/results/{ids['K']}/replace",
        data={"csrf_token": token, "value": "4,1", "reason": "tastefeil", "back": "review"},
        headers=PARTIAL,
    )
    assert done.status_code == 200 and "<html" not in done.text
    assert "Erstattet (var 41): tastefeil – t-technician" in done.text
    assert (
        "venter på godkjenning" in done.headers["X-Lab-Notice"]
        or "%" in done.headers["X-Lab-Notice"]
    )
    db.expire_all()
    k = db.get(Result, ids["K"])
    assert k is not None and str(k.value_numeric) == "4.1" and k.status == "awaiting_review"
    actions = db.scalars(
        select(AuditEvent.action).where(
            AuditEvent.entity_type == "result", AuditEvent.entity_id == str(ids["K"])
        )
    ).all()
    assert "result.replace" in actions


def test_rerun_and_discard_from_the_result_page(client: TestClient, db: Session) -> None:
    number = accession_for(db, order(db, "HP-FX2", ["NA", "K"]), "SERUM")
    token = sign_in(client, "t-physician")
    received(client, token, number)
    enter(client, token, number, NA="140", K="6,1")
    ids = result_ids(db, number)
    page = client.get(f"/results/{ids['K']}").text
    assert "Rett resultatet før godkjenning" in page
    rerun = client.post(
        f"/results/{ids['K']}/rerun",
        data={"csrf_token": token, "reason": "hemolyse?", "back": "result"},
        follow_redirects=False,
    )
    assert rerun.status_code == 303 and rerun.headers["location"].startswith(f"/results/{ids['K']}")
    shown = client.get(rerun.headers["location"]).text
    assert "sendt tilbake til analysatoren" in shown
    assert "Omkjøring bestilt (var 6,1): hemolyse? – t-physician" in shown
    # Back on the worklist and on the entry page; gone from the review queue.
    assert number in client.get("/worklist?bench=SERUM").text
    assert f'data-result="{ids["K"]}"' not in client.get("/review").text
    assert 'name="value_K"' in client.get(f"/specimens/{number}/results").text
    discarded = client.post(
        f"/results/{ids['NA']}/discard",
        data={"csrf_token": token, "reason": "feil pasient", "back": "review"},
        follow_redirects=False,
    )
    assert discarded.status_code == 303 and "result_discarded" in discarded.headers["location"]
    db.expire_all()
    na = db.get(Result, ids["NA"])
    assert na is not None and na.status == "cancelled"
    again = client.post(
        f"/results/{ids['NA']}/discard",
        data={"csrf_token": token, "reason": "igjen", "back": "result"},
    )
    assert again.status_code == 409 and "kansellert" in again.text


def test_a_technician_may_not_discard_and_an_admin_may_not_fix(
    client: TestClient, db: Session
) -> None:
    number = accession_for(db, order(db, "HP-FX3", ["NA"]), "SERUM")
    token = sign_in(client)
    received(client, token, number)
    enter(client, token, number, NA="140")
    ids = result_ids(db, number)
    denied = client.post(
        f"/results/{ids['NA']}/discard",
        data={"csrf_token": token, "reason": "x"},
        headers={"Accept": "text/html"},
    )
    assert denied.status_code == 403
    admin = TestClient(client.app)
    admin_token = sign_in(admin, "t-admin")
    for action in ("replace", "rerun", "discard"):
        refused = admin.post(
            f"/results/{ids['NA']}/{action}",
            data={"csrf_token": admin_token, "reason": "x", "value": "1"},
        )
        assert refused.status_code == 403, action
    db.expire_all()
    na = db.get(Result, ids["NA"])
    assert na is not None and na.status == "awaiting_review" and na.version == 1
