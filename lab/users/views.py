"""Admin pages: the users of the lab module (admins only; no patient data here)."""

from __future__ import annotations

from fastapi import Request, Response

from lab.deps import SessionDep
from lab.users import service as users
from lab.web.auth import ManageUsersPage
from lab.web.pages import page_router
from lab.web.templating import render

router = page_router()


@router.get("/admin/users")
def users_page(request: Request, session: SessionDep, actor: ManageUsersPage) -> Response:
    return render(request, "users/users.html", {"users": users.list_users(session)})
