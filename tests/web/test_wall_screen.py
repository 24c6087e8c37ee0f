"""The overview's lists say when they are cut; the wall screen refreshes itself and shows no
patient names, for a display account that may see nothing else."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from lab.users import service as users
from lab.web import overview
from testkit.database import PASSWORD
from tests.conftest import actor
from tests.web.support import order, sign_in


def test_the_lists_say_when_they_are_cut(
    client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(overview, "LIST_LIMIT", 2)
    for n in range(3):
        order(db, f"HP-CUT{n}", ["NA"])
    sign_in(client)
    awaiting = client.get("/").text.split('id="awaiting"')[1].split("</section>")[0]
    assert "(Viser 2 av 3)" in awaiting


def test_the_wall_screen_refreshes_and_names_no_patients(client: TestClient, db: Session) -> None:
    users.create_user(
        db,
        actor=actor("admin"),
        username="vegg",
        display_name="Veggskjerm lab",
        roles=["display"],
        password=PASSWORD,
    )
    db.commit()
    order(db, "HP-WALL1", ["NA", "HB"], priority="stat")
    page = client.get("/login")
    from tests.web.support import csrf_of

    signed = client.post(
        "/login",
        data={"username": "vegg", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert signed.status_code == 303
    home = client.get("/", follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"] == "/wall"
    wall = client.get("/wall")
    assert wall.status_code == 200
    assert '<meta http-equiv="refresh" content="60">' in wall.text
    assert "Veggskjerm" in wall.text and "ØH" in wall.text
    assert "Østbø" not in wall.text and "Kari" not in wall.text  # no patient names
    assert 'href="/specimens/' not in wall.text and 'href="/review' not in wall.text
    # Nothing else is open to the display account.
    for path in ("/review", "/worklist", "/specimens/receive", "/search?q=kari", "/messages"):
        assert client.get(path).status_code == 403, path
