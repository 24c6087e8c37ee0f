"""Helpers of the page tests: sign in through the form, read CSRF tokens, place orders."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from lab.tables import Order
from testkit.database import PASSWORD
from testkit.orders import place
from tests.conftest import actor

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _TOKEN.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: TestClient, username: str = "t-technician") -> str:
    """Sign in through the login form; returns the session's CSRF token for later forms."""
    page = client.get("/login")
    assert page.status_code == 200
    response = client.post(
        "/login",
        data={
            "username": username,
            "password": PASSWORD,
            "csrf_token": csrf_of(page.text),
            "next": "/",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    return csrf_of(home.text)


def order(db: Session, placer: str, tests: list[str], *, priority: str = "routine") -> Order:
    placed = place(db, actor("interface"), placer=placer, tests=tests, priority=priority)
    db.commit()
    return placed


def accession_for(db: Session, placed: Order, container: str) -> str:
    from lab.orders import service as orders

    return next(
        s.accession_number for s in orders.specimens_of(db, placed) if s.container == container
    )
