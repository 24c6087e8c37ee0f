"""User administration: add, reset the password, disable, unlock and set roles, each audited,
and only for administrators."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.tables import ApiToken, AuditEvent, User
from lab.timeutil import utcnow
from lab.users import service as users
from lab.users import tokens
from testkit.database import PASSWORD
from tests.conftest import auth
from tests.web.support import csrf_of, sign_in


def _user(db: Session, username: str) -> User:
    db.expire_all()
    user = db.scalar(select(User).where(User.username == username))
    assert user is not None
    return user


def test_an_administrator_manages_users(client: TestClient, db: Session) -> None:
    # Tests with servers of their own commit what t-admin does there: count only this test's.
    before = db.scalar(select(func.coalesce(func.max(AuditEvent.id), 0)))
    csrf = sign_in(client, "t-admin")
    page = client.get("/admin/users")
    assert page.status_code == 200 and "Ny bruker" in page.text and "bioingeniør" in page.text

    refused = client.post(
        "/admin/users",
        data={"csrf_token": csrf, "username": "ny bruker", "display_name": "Kari", "password": "x"},
    )
    assert refused.status_code == 422
    form = refused.text.split('id="add-user"')[1]
    assert "Bruk bare bokstaver, sifre og «-»." in form
    assert "Velg minst én kjent rolle." in form and "minst 10 tegn" in form
    assert 'value="Kari"' in form  # what was typed is kept

    # Clinical roles are not the web administrator's to give: refused, nobody made.
    refused = client.post(
        "/admin/users",
        data={
            "csrf_token": csrf,
            "username": "kari",
            "display_name": "Kari Nordmann",
            "roles": ["technician", "reviewer"],
            "password": PASSWORD,
        },
    )
    assert refused.status_code == 403 and "driftsansvarlig" in refused.text
    db.expire_all()
    assert db.scalar(select(User).where(User.username == "kari")) is None
    add_form = page.text.split('id="add-user"')[1]
    assert 'value="physician"' not in add_form and 'id="operator-roles"' in page.text

    # A wall-screen account is.
    added = client.post(
        "/admin/users",
        data={
            "csrf_token": csrf,
            "username": "vakt",
            "display_name": "Vaktrom",
            "roles": ["display"],
            "password": PASSWORD,
        },
        follow_redirects=False,
    )
    assert added.status_code == 303
    assert _user(db, "vakt").roles == ["display"]

    # The operator makes Kari (as `lab user add kari --role technician --role reviewer`).
    users.create_user(
        db,
        actor=Actor.system("cli"),
        username="kari",
        display_name="Kari Nordmann",
        roles=["technician", "reviewer"],
        password=PASSWORD,
    )
    kari_token = tokens.create_token(db, actor=Actor.system("cli"), username="kari").token
    db.commit()

    # Kari signs in in another browser; disabling her ends that session and her token.
    other = TestClient(client.app)
    sign_in(other, "kari")
    assert client.get("/api/v1/me", headers=auth(kari_token)).status_code == 200
    assert (
        client.post(
            "/admin/users/kari/active", data={"csrf_token": csrf, "active": "no"}
        ).status_code
        == 200
    )
    assert _user(db, "kari").active is False
    assert "/login" in str(other.get("/").url)
    assert client.get("/api/v1/me", headers=auth(kari_token)).status_code == 401
    client.post("/admin/users/kari/active", data={"csrf_token": csrf, "active": "yes"})
    assert _user(db, "kari").active is True
    # Enabled again, the old token stays revoked.
    assert client.get("/api/v1/me", headers=auth(kari_token)).status_code == 401

    # A lockout lifted by hand.
    db.execute(
        update(User)
        .where(User.username == "kari")
        .values(failed_logins=5, locked_until=utcnow() + timedelta(minutes=15))
    )
    db.commit()
    assert "Opphev sperre" in client.get("/admin/users").text
    client.post("/admin/users/kari/unlock", data={"csrf_token": csrf})
    assert _user(db, "kari").locked_until is None

    # Giving physician is refused; taking reviewer away is not.
    given = client.post(
        "/admin/users/kari/roles", data={"csrf_token": csrf, "roles": ["physician"]}
    )
    assert given.status_code == 403 and _user(db, "kari").roles == ["technician", "reviewer"]
    client.post("/admin/users/kari/roles", data={"csrf_token": csrf, "roles": ["technician"]})
    assert _user(db, "kari").roles == ["technician"]
    # Kari's password is hers or the operator's to set, not the administrator's.
    page = client.get("/admin/users").text
    assert 'action="/admin/users/kari/password"' not in page
    assert 'action="/admin/users/vakt/password"' in page
    forced = client.post(
        "/admin/users/kari/password", data={"csrf_token": csrf, "password": "et nytt passord"}
    )
    assert forced.status_code == 403

    wall = TestClient(client.app)
    sign_in(wall, "vakt")
    short = client.post("/admin/users/vakt/password", data={"csrf_token": csrf, "password": "kort"})
    assert short.status_code == 422
    assert "minst 10 tegn" in short.text.split('id="user-vakt"')[1].split("</tr>")[0]
    client.post(
        "/admin/users/vakt/password", data={"csrf_token": csrf, "password": "et nytt passord"}
    )
    assert "/login" in str(wall.get("/wall").url)  # a new password ends the open sessions

    actions = [
        a
        for a in db.scalars(
            select(AuditEvent.action)
            .where(
                AuditEvent.entity_type == "user",
                AuditEvent.actor_name == "t-admin",
                AuditEvent.action != "user.sign_in",
                AuditEvent.id > before,
            )
            .order_by(AuditEvent.id)
        )
    ]
    assert actions == [
        "user.create",
        "user.disable",
        "user.enable",
        "user.unlock",
        "user.roles",
        "user.set_password",
    ]


def test_an_administrator_lists_and_revokes_tokens(client: TestClient, db: Session) -> None:
    made = tokens.create_token(db, actor=Actor.system("cli"), username="t-technician", label="x")
    db.commit()
    csrf = sign_in(client, "t-admin")
    page = client.get("/admin/users").text
    row = page.split(f'id="token-{made.id}"')[1].split("</tr>")[0]
    assert "gyldig" in row and made.token not in page
    revoked = client.post(f"/admin/users/tokens/{made.id}/revoke", data={"csrf_token": csrf})
    assert "API-nøkkelen er trukket tilbake." in revoked.text
    row = revoked.text.split(f'id="token-{made.id}"')[1].split("</tr>")[0]
    assert "trukket tilbake" in row
    assert client.get("/api/v1/me", headers=auth(made.token)).status_code == 401


def test_an_administrator_cannot_lock_themselves_out(client: TestClient, db: Session) -> None:
    csrf = sign_in(client, "t-admin")
    refused = client.post("/admin/users/t-admin/active", data={"csrf_token": csrf, "active": "no"})
    assert refused.status_code == 409 and "Du kan ikke deaktivere deg selv." in refused.text
    refused = client.post(
        "/admin/users/t-admin/roles", data={"csrf_token": csrf, "roles": ["display"]}
    )
    assert refused.status_code == 409 and "administratorrolle" in refused.text
    assert _user(db, "t-admin").active and "admin" in _user(db, "t-admin").roles


def test_others_may_not_manage_users(client: TestClient, db: Session) -> None:
    csrf = sign_in(client, "t-physician")
    assert client.get("/admin/users").status_code == 403
    posted = client.post(
        "/admin/users/t-technician/active", data={"csrf_token": csrf, "active": "no"}
    )
    assert posted.status_code == 403
    assert _user(db, "t-technician").active
    page = client.get("/")
    assert csrf_of(page.text)


def test_the_signers_name_and_title_are_printed(client: TestClient, db: Session) -> None:
    import io

    from pypdf import PdfReader

    from tests.web.support import accession_for, order
    from tests.web.test_result_pages import typed_by_technician

    csrf = sign_in(client, "t-admin")
    page = client.get("/admin/users").text
    assert 'action="/admin/users/t-physician/name"' in page and "Tittel" in page
    missing = client.post(
        "/admin/users/t-physician/name",
        data={"csrf_token": csrf, "display_name": " ", "title": "overlege"},
    )
    assert missing.status_code == 422 and "Skriv hele navnet." in missing.text
    assert 'value="overlege"' in missing.text  # what was typed is kept
    saved = client.post(
        "/admin/users/t-physician/name",
        data={"csrf_token": csrf, "display_name": "Lise Lien", "title": "overlege"},
        follow_redirects=False,
    )
    assert saved.status_code == 303 and saved.headers["location"].endswith("done=name_set")
    user = _user(db, "t-physician")
    assert (user.display_name, user.title) == ("Lise Lien", "overlege")
    changed = db.scalars(select(AuditEvent).where(AuditEvent.action == "user.name")).all()
    assert changed and changed[-1].after == {"display_name": "Lise Lien", "title": "overlege"}
    # Only administrators set names.
    lege = TestClient(client.app)
    token = sign_in(lege, "t-physician")
    denied = lege.post(
        "/admin/users/t-physician/name",
        data={"csrf_token": token, "display_name": "X", "title": "professor"},
    )
    assert denied.status_code == 403
    # The report says who verified by name and title, not by user name.
    placed = order(db, "HP-SIGN1", ["CRP"])
    number = accession_for(db, placed, "SERUM")
    typed_by_technician(lege, number, CRP="12")  # four eyes: the physician only releases it
    result_id = (
        db.execute(
            select(AuditEvent.entity_id).where(
                AuditEvent.action == "result.record", AuditEvent.patient_id == placed.patient_id
            )
        )
        .scalars()
        .first()
    )
    assert lege.post(f"/results/{result_id}/verify", data={"csrf_token": token}).status_code in (
        200,
        303,
    )
    report = lege.get(f"/orders/{placed.filler_order_number}/report.pdf")
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(report.content)).pages)
    assert "Godkjent av Lise Lien, overlege" in text
    assert "t-physician" not in text


def test_a_person_sees_their_roles_and_makes_and_revokes_their_own_token(
    client: TestClient, db: Session
) -> None:
    csrf = sign_in(client, "t-physician")
    page = client.get("/account")
    assert page.status_code == 200 and "Min konto" in page.text
    # Who gave the physician role: the operator's `user.create` (the test kit's system actor).
    assert "user.create" in page.text and "physician" in page.text.split("account-changes")[1]
    made = client.post("/account/tokens", data={"csrf_token": csrf, "label": "skript", "days": "7"})
    assert made.status_code == 200 and "vises ikke igjen" in made.text
    token = made.text.split('id="new-token"')[1].split("<code>")[1].split("</code>")[0]
    assert client.get("/api/v1/me", headers=auth(token)).json()["username"] == "t-physician"
    again = client.get("/account").text
    assert token not in again  # shown once
    token_id = db.scalar(select(ApiToken.id).where(ApiToken.label == "skript"))
    assert token_id is not None and f'id="token-{token_id}"' in again
    revoked = client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf})
    assert "API-nøkkelen er trukket tilbake." in revoked.text
    assert client.get("/api/v1/me", headers=auth(token)).status_code == 401
    # Someone else's token is not theirs to revoke.
    other = tokens.create_token(db, actor=Actor.system("cli"), username="t-technician")
    db.commit()
    refused = client.post(f"/account/tokens/{other.id}/revoke", data={"csrf_token": csrf})
    assert refused.status_code == 403 and "dine egne" in refused.text


def test_a_title_is_given_when_the_user_is_made(
    client: TestClient, db: Session, tokens: dict[str, str]
) -> None:
    """The title printed with "Godkjent av" need not wait for a second form: the web form and
    the API take it with the new account (the CLI's `lab user add --title`: tests/test_cli.py)."""
    csrf = sign_in(client, "t-admin")
    assert 'id="new-title"' in client.get("/admin/users").text
    too_long = client.post(
        "/admin/users",
        data={
            "csrf_token": csrf,
            "username": "titled-web",
            "display_name": "Siri Sjef",
            "title": "x" * 101,
            "roles": ["admin"],
            "password": PASSWORD,
        },
    )
    assert too_long.status_code == 422 and "Navnet eller tittelen er for lang." in too_long.text
    db.expire_all()
    assert db.scalar(select(User).where(User.username == "titled-web")) is None
    added = client.post(
        "/admin/users",
        data={
            "csrf_token": csrf,
            "username": "titled-web",
            "display_name": "Siri Sjef",
            "title": " seksjonsleder ",
            "roles": ["admin"],
            "password": PASSWORD,
        },
        follow_redirects=False,
    )
    assert added.status_code == 303
    assert _user(db, "titled-web").title == "seksjonsleder"
    made = db.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "user.create",
            AuditEvent.entity_id == str(_user(db, "titled-web").id),
        )
    ).one()
    assert made.after is not None and made.after["title"] == "seksjonsleder"

    answer = client.post(
        "/api/v1/users",
        json={
            "username": "titled-api",
            "display_name": "Per Patolog",
            "title": "overlege",
            "roles": ["display"],
            "password": PASSWORD,
        },
        headers=auth(tokens["admin"]),
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["title"] == "overlege"
    assert _user(db, "titled-api").title == "overlege"
    refused = client.post(
        "/api/v1/users",
        json={"username": "titled-api2", "title": "x" * 101, "roles": ["display"]},
        headers=auth(tokens["admin"]),
    )
    assert refused.status_code == 422
