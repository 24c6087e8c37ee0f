"""One language per page: unknown pages, refusals and the status strip in the reader's language."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from lab.tables import UnmatchedResult
from tests.web.support import sign_in


def test_an_unknown_page_is_a_bokmal_page_and_the_api_keeps_json(client: TestClient) -> None:
    sign_in(client)
    page = client.get("/admin/nothing-here", headers={"accept": "text/html"})
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Siden finnes ikke" in page.text and "<h1>Finnes ikke</h1>" in page.text
    english = client.get("/admin/nothing-here?lang=en", headers={"accept": "text/html"})
    assert "There is no such page" in english.text and "Siden finnes ikke" not in english.text
    api = client.get("/api/v1/nothing-here", headers={"accept": "text/html"})
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}
    script = client.get("/admin/nothing-here", headers={"accept": "application/json"})
    assert script.status_code == 404 and script.json() == {"detail": "Not Found"}


def test_a_refusal_is_a_bokmal_page_with_the_reason(client: TestClient) -> None:
    sign_in(client, "t-technician")
    refused = client.get("/admin/users")
    assert refused.status_code == 403
    assert "Ingen tilgang" in refused.text and "administrere brukere" in refused.text
    assert "may not" not in refused.text


def test_the_api_carries_the_error_code_beside_the_english_message(
    client: TestClient, tokens: dict[str, str]
) -> None:
    response = client.get(
        "/api/v1/specimens/2600000007", headers={"Authorization": f"Bearer {tokens['technician']}"}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "accession_check_digit" and "check digit" in body["message"]
    assert body["problems"][0]["code"] == "accession_check_digit"


def test_the_status_strip_is_not_up_while_results_sit_unmatched(
    client: TestClient, db: Session
) -> None:
    sign_in(client)
    client.app.state.components.register(  # type: ignore[attr-defined]
        "instrument:demo", lambda: {"state": "up", "line": "connected"}
    )
    strip = client.get("/").text.split('class="status-strip"')[1].split("</ul>")[0]
    assert "Analysator demo: oppe" in strip and "state-up" in strip
    db.add(
        UnmatchedResult(
            fingerprint="strip-test",
            instrument="demo",
            specimen_id="999",
            instrument_test_code="NA",
            test_code="NA",
            value="140",
            unit="mmol/L",
            instrument_flags="",
            result_status="F",
            operator="",
            reason="unknown specimen",
            raw_record="R|1|^^^NA|140",
        )
    )
    db.commit()
    strip = client.get("/").text.split('class="status-strip"')[1].split("</ul>")[0]
    assert "state-attention" in strip and "trenger tilsyn" in strip and "1 uparret" in strip
    assert ": oppe" not in strip
