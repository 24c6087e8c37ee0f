"""The demo: the demo catalog and the three demo users (README.md) on an empty database."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.catalog import service as catalog
from lab.qc.demo import seed_demo_qc
from lab.rulesets import service as rulesets
from lab.tables import LabTest, User
from lab.users import service as users
from lab.users.roles import Role

DEMO_USERS: list[tuple[str, str, list[Role]]] = [
    ("admin", "Demo administrator", [Role.ADMIN]),
    ("bio", "Demo bioingeniør", [Role.TECHNICIAN]),
    ("lege", "Demo lege (lab physician)", [Role.PHYSICIAN, Role.REVIEWER]),
]


def seed(session: Session, *, password: str | None, rules_active: bool = True) -> dict[str, str]:
    """Load the demo catalog if no tests exist, the demo rule documents (version 1 of each,
    active; drafts with `rules_active` false) if none of their kind exist, and the demo users if
    no users exist.

    Returns the passwords of users made now (random unless `password` is given), so the caller
    can show them once.
    """
    actor = Actor.system("cli")
    if not session.scalar(select(func.count()).select_from(LabTest)):
        catalog.load_catalog_file(session, actor=actor)
    seed_demo_qc(session, actor=actor)
    rulesets.seed_demo(session, actor=actor, active=rules_active)
    made: dict[str, str] = {}
    if not session.scalar(select(func.count()).select_from(User)):
        for username, name, roles in DEMO_USERS:
            secret = password or secrets.token_urlsafe(12)
            users.create_user(
                session,
                actor=actor,
                username=username,
                display_name=name,
                roles=[r.value for r in roles],
                password=secret,
            )
            made[username] = secret
    return made
