"""Sign-in, sessions, CSRF and roles on the pages."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lab.deps import SESSION_COOKIE
from lab.tables import AuditEvent, WebSession
from lab.timeutil import utcnow
from testkit.database import PASSWORD
from tests.web.support import accession_for, csrf_of, order, sign_in


def test_pages_send_a_signed_out_browser_to_the_login_and_back(client: TestClient) -> None:
    response = client.get("/review?x=1", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Freview%3Fx%3D1"
    login = client.get(response.headers["location"])
    assert 'name="next" value="/review?x=1"' in login.text
    done = client.post(
        "/login",
        data={
            "username": "t-reviewer",
            "password": PASSWORD,
            "csrf_token": csrf_of(login.text),
            "next": "/review?x=1",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/review?x=1"


def test_next_cannot_leave_the_site(client: TestClient) -> None:
    login = client.get("/login")
    done = client.post(
        "/login",
        data={
            "username": "t-reviewer",
            "password": PASSWORD,
            "csrf_token": csrf_of(login.text),
            "next": "//evil.example/",
        },
        follow_redirects=False,
    )
    assert done.headers["location"] == "/"


def test_wrong_password_is_shown_next_to_the_form_and_the_username_kept(
    client: TestClient,
) -> None:
    login = client.get("/login")
    response = client.post(
        "/login",
        data={"username": "t-technician", "password": "nope", "csrf_token": csrf_of(login.text)},
    )
    assert response.status_code == 400
    assert "Feil brukernavn eller passord" in response.text
    assert 'value="t-technician"' in response.text
    assert SESSION_COOKIE not in response.cookies


def test_repeated_failures_lock_the_account_with_a_clear_message(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    for _ in range(5):  # max_failed_logins defaults to 5
        response = client.post(
            "/login", data={"username": "t-reviewer", "password": "nope", "csrf_token": token}
        )
    assert "midlertidig sperret" in response.text
    # Even the right password is refused while the lock lasts.
    locked = client.post(
        "/login", data={"username": "t-reviewer", "password": PASSWORD, "csrf_token": token}
    )
    assert locked.status_code == 400 and "midlertidig sperret" in locked.text


def test_login_form_without_its_token_is_refused(client: TestClient) -> None:
    client.get("/login")
    response = client.post(
        "/login", data={"username": "t-technician", "password": PASSWORD, "csrf_token": "forged"}
    )
    assert response.status_code == 403
    assert SESSION_COOKIE not in response.cookies


def test_every_form_post_without_the_csrf_token_answers_403(
    client: TestClient, db: Session
) -> None:
    placed = order(db, "HP-CSRF", ["HB"])
    number = accession_for(db, placed, "EDTA")
    token = sign_in(client, "t-physician")
    posts = {
        "/specimens/receive": {"accession_number": number},
        f"/specimens/{number}/reject": {"reason": "RH"},
        f"/specimens/{number}/results": {"value_HB": "14"},
        "/results/1/verify": {},
        "/results/1/correct": {"value": "1", "reason": "x"},
        f"/specimens/{number}/verify-unremarkable": {},
        f"/orders/{placed.filler_order_number}/tests": {"code": "CRP"},
        f"/orders/{placed.filler_order_number}/cancel": {"codes": "HB", "reason": "x"},
        "/logout": {},
    }
    for path, data in posts.items():
        assert client.post(path, data=data).status_code == 403, path
        forged = client.post(path, data={**data, "csrf_token": token[:-2] + "xx"})
        assert forged.status_code == 403, path
    # Nothing happened: the tube is still expected.
    assert "ventet" in client.get(f"/specimens/{number}").text


def test_sign_out_ends_the_session(client: TestClient) -> None:
    token = sign_in(client)
    response = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?done=signed_out"
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_session_times_out_and_says_so(client: TestClient, db: Session) -> None:
    sign_in(client)
    db.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    response = client.get("/worklist", follow_redirects=False)
    assert response.status_code == 303
    assert "expired=1" in response.headers["location"]
    assert "Økten er utløpt" in client.get(response.headers["location"]).text


def test_technician_sees_no_verify_buttons_and_cannot_verify(
    client: TestClient, db: Session
) -> None:
    placed = order(db, "HP-ROLE", ["NA"])
    number = accession_for(db, placed, "SERUM")
    token = sign_in(client, "t-technician")
    client.post("/specimens/receive", data={"csrf_token": token, "accession_number": number})
    client.post(f"/specimens/{number}/results", data={"csrf_token": token, "value_NA": "140"})
    review = client.get("/review")
    assert review.status_code == 200
    assert "/results/" in review.text and "/verify" not in review.text
    result_id = int(review.text.split('id="result-')[1].split('"')[0])
    refused = client.post(f"/results/{result_id}/verify", data={"csrf_token": token})
    assert refused.status_code == 403
    assert "Ingen tilgang" in refused.text


def test_only_admins_reach_admin_pages_and_admins_see_no_patients(client: TestClient) -> None:
    sign_in(client, "t-technician")
    assert client.get("/admin/users").status_code == 403
    client.cookies.clear()
    sign_in(client, "t-admin")
    users = client.get("/admin/users")
    assert users.status_code == 200 and "t-technician" in users.text
    assert client.get("/review").status_code == 403
    assert client.get("/search?q=Østbø").status_code == 403
    assert "Administratorer ser ikke pasientdata" in client.get("/").text


def test_pages_are_not_in_the_api_description(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if not p.startswith(("/api/", "/healthz"))]


def test_signing_in_is_audited(client: TestClient, db: Session) -> None:
    sign_in(client, "t-reviewer")
    actions = db.scalars(
        select(AuditEvent.action).where(AuditEvent.actor_name == "t-reviewer")
    ).all()
    assert "user.sign_in" in actions
