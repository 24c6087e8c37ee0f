"""The HL7 message monitor: true counts, keyset paging, resend of a dead letter, who may."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.tables import OUTBOUND, AuditEvent, Hl7Message
from tests.web.support import sign_in


def _outbound(db: Session, n: int, status: str, error: str = "") -> list[int]:
    rows = [
        Hl7Message(
            direction=OUTBOUND,
            status=status,
            partner="mllp://127.0.0.1:2576",
            control_id=f"LAB{status}{i}",
            message_type="ORU^R01",
            raw=b"MSH|^~\\&|LAB|HOSP|EHR|HOSP|20261127081500||ORU^R01|X|P|2.5.1\rPID|1||12345",
            error=error,
            attempts=10,
            next_attempt_at=datetime.now(UTC),
        )
        for i in range(n)
    ]
    db.add_all(rows)
    db.commit()
    return [row.id for row in rows]


def test_the_monitor_counts_pages_and_resends_a_dead_letter(
    client: TestClient, db: Session
) -> None:
    _outbound(db, 120, "acknowledged")
    (dead,) = _outbound(db, 1, "dead", error="AE from the record: PID-3 unknown")
    csrf = sign_in(client, "t-admin")
    page = client.get("/messages")
    assert page.status_code == 200
    assert re.search(r"Ut · kvittert <span class=\"count\">120</span>", page.text)
    assert re.search(r"Ut · stanset <span class=\"count\">1</span>", page.text)
    assert page.text.count('<tr class="msg-') == 50  # one page; the next is one link away
    older = re.search(r'rel="next" href="([^"]+)"', page.text)
    assert older is not None
    seen = 50
    link: str | None = older.group(1).replace("&amp;", "&")
    while link:
        more = client.get(link)
        seen += more.text.count('<tr class="msg-')
        found = re.search(r'rel="next" href="([^"]+)"', more.text)
        link = found.group(1).replace("&amp;", "&") if found else None
    assert seen == 121  # nothing silently left out
    # The administrator sees metadata, not content.
    detail = client.get(f"/messages/{dead}")
    assert "PID-3 unknown" in detail.text and "PID|1||12345" not in detail.text
    resent = client.post(
        f"/messages/{dead}/resend", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert resent.status_code == 303
    assert "lagt i kø for ny sending" in client.get(resent.headers["location"]).text
    db.expire_all()
    message = db.get(Hl7Message, dead)
    assert message is not None and message.status == "queued" and message.attempts == 0
    audit = db.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "hl7.resend", AuditEvent.entity_id == str(dead)
        )
    ).all()
    assert len(audit) == 1 and audit[0].actor_name == "t-admin"
    again = client.post(f"/messages/{dead}/resend", data={"csrf_token": csrf})
    assert again.status_code == 409 and "Bare stansede utgående meldinger" in again.text


def test_the_physician_sees_the_content_and_the_read_is_audited(
    client: TestClient, db: Session
) -> None:
    (dead,) = _outbound(db, 1, "dead")
    sign_in(client, "t-physician")
    detail = client.get(f"/messages/{dead}")
    assert "PID|1||12345" in detail.text and "Send på nytt" in detail.text


def test_technicians_may_not_see_the_log_or_resend(client: TestClient, db: Session) -> None:
    (dead,) = _outbound(db, 1, "dead")
    csrf = sign_in(client, "t-technician")
    assert "/messages" not in client.get("/").text.split("</nav>")[0]
    refused = client.get("/messages")
    assert refused.status_code == 403 and "Ingen tilgang" in refused.text
    posted = client.post(f"/messages/{dead}/resend", data={"csrf_token": csrf})
    assert posted.status_code == 403
    no_csrf = client.post(f"/messages/{dead}/resend", data={})
    assert no_csrf.status_code == 403
    db.expire_all()
    message = db.get(Hl7Message, dead)
    assert message is not None and message.status == "dead"
