"""The HL7 message monitor: the log of messages to and from the record, and resend of a dead one.

The rules of who sees what are the message log's (lab/hl7/messagelog.py): lab physicians and
administrators see the log (administrators without content); resending a dead letter is audited.
Paging is by keyset (`before`: the last id shown), so page 2 000 is as fast as page 1, and the
tabs carry true counts.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response

from lab.deps import SessionDep
from lab.hl7 import messagelog
from lab.tables import INBOUND, OUTBOUND
from lab.web.auth import CurrentUserPage, FormUser
from lab.web.pages import notice_of, page_router, redirect_after_post
from lab.web.templating import render

router = page_router()

PAGE_SIZE = 50


@router.get("/messages")
def message_monitor(
    request: Request,
    session: SessionDep,
    actor: CurrentUserPage,
    direction: Annotated[str, Query(pattern="^(in|out|)$")] = "",
    status: Annotated[str, Query(max_length=16)] = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    counts = messagelog.status_counts(session, actor=actor)
    if status and status not in messagelog.STATUSES.get(direction, ()):
        status = ""  # a status belongs to one direction: a stale link shows them all
    found = messagelog.list_messages(
        session,
        actor=actor,
        direction=direction or None,
        status=status or None,
        limit=PAGE_SIZE + 1,
        before_id=before,
    )
    more = len(found) > PAGE_SIZE
    messages = found[:PAGE_SIZE]
    if direction and status:
        total = counts.get((direction, status), 0)
    elif direction:
        total = sum(n for (d, _), n in counts.items() if d == direction)
    else:
        total = sum(counts.values())
    tabs = [
        {"direction": d, "status": s, "count": counts.get((d, s), 0)}
        for d in (INBOUND, OUTBOUND)
        for s in messagelog.STATUSES[d]
    ]
    return render(
        request,
        "hl7/messages.html",
        {
            "messages": messages,
            "direction": direction,
            "status": status,
            "tabs": tabs,
            "total": total,
            "next_before": messages[-1].id if more and messages else None,
            "first_page": before is None,
            "may_resend": bool(actor.roles & messagelog.RESEND_ROLES),
            "notice": notice_of(request),
        },
    )


@router.get("/messages/{message_id}")
def message_page(
    request: Request, message_id: int, session: SessionDep, actor: CurrentUserPage
) -> Response:
    message = messagelog.read(session, message_id, actor=actor)  # audited when content is shown
    content = messagelog.content_text(message) if messagelog.may_read_content(actor) else None
    return render(
        request,
        "hl7/message.html",
        {
            "message": message,
            "segments": content.replace("\r\n", "\r").split("\r") if content else None,
            "may_resend": bool(actor.roles & messagelog.RESEND_ROLES),
            "notice": notice_of(request),
        },
    )


@router.post("/messages/{message_id}/resend")
def resend(message_id: int, session: SessionDep, actor: FormUser) -> Response:
    messagelog.resend(session, message_id, actor=actor)
    return redirect_after_post(f"/messages/{message_id}", "resent")
