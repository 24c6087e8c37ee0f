"""The lab's own screens in headless Chromium: review by keyboard alone, one language per page,
rejecting at the scan bench, the operations pages and the wall screen; a screenshot of each new
page goes to docs/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page
from sqlalchemy import select

from lab.results import service as results
from lab.specimens import service as specimens
from lab.tables import OUTBOUND, Hl7Message, Result, UnmatchedResult
from lab.users import service as users
from testkit.database import PASSWORD
from tests.conftest import actor
from tests.web.live_server import LiveServer, run_live_server
from tests.web.test_browser import place_order, shoot, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from run_live_server(tmp_path_factory.mktemp("screens"))


def results_in(live: LiveServer, tube: str, values: dict[str, str]) -> dict[str, int]:
    """Results from the analyser for one received tube; their ids by test code."""
    with live.sessions() as session:
        specimens.receive(session, actor=actor("technician"), number=tube)
        ids = {}
        for code, value in values.items():
            outcome = results.record(
                session,
                actor=actor("instrument", "demo"),
                measurement=results.Measurement(
                    accession_number=tube, test_code=code, value=value, instrument="demo"
                ),
            )
            ids[code] = outcome.result_id
        session.commit()
        return ids


def status_of(live: LiveServer, result_id: int) -> str:
    with live.sessions() as session:
        return str(session.scalar(select(Result.status).where(Result.id == result_id)))


def test_review_by_keyboard_alone(page: Page, live: LiveServer) -> None:
    p = page
    plain = place_order(live, "HP-K1", ["NA", "K"], "routine")
    critical = place_order(live, "HP-K2", ["NA", "K"], "stat")
    plain_ids = results_in(live, plain["SERUM"], {"NA": "140", "K": "4.1"})
    critical_ids = results_in(live, critical["SERUM"], {"NA": "170", "K": "7.1"})
    sign_in(p, "lege")
    p.goto("/review")
    total = int(p.inner_text("#review-total"))
    assert total >= 4
    # The stat tube with two critical results comes first; one call covers both.
    assert p.evaluate("document.activeElement.dataset.result") == str(critical_ids["NA"])
    shoot(p, "review-keyboard")
    p.keyboard.press("v")  # a critical result: to the call form, not verified blind
    assert p.evaluate("document.activeElement.name") == "notified_person"
    p.keyboard.type("Lise Lien, MED3")
    p.keyboard.press("Tab")
    p.keyboard.press("Space")  # read back (the time of the call is filled in with now)
    p.keyboard.press("Tab")
    p.keyboard.type("ringt vakthavende")
    p.keyboard.press("Enter")
    p.wait_for_selector(f"#specimen-{critical['SERUM']}", state="detached")
    assert status_of(live, critical_ids["NA"]) == "verified"
    assert status_of(live, critical_ids["K"]) == "verified"
    assert int(p.inner_text("#review-total")) == total - 2
    # Focus stays in the list: the next tube's first result.
    assert p.evaluate("document.activeElement.dataset.result") == str(plain_ids["NA"])
    p.keyboard.press("j")
    assert p.evaluate("document.activeElement.dataset.result") == str(plain_ids["K"])
    p.keyboard.press("c")
    p.keyboard.type("kontroll")
    p.keyboard.press("Enter")  # verifies this one with the comment
    p.wait_for_selector(f"tr#result-{plain_ids['K']}", state="detached")
    assert status_of(live, plain_ids["K"]) == "verified"
    p.keyboard.press("a")  # verify all unremarkable of the tube: the sodium
    p.wait_for_selector(f"#specimen-{plain['SERUM']}", state="detached")
    assert status_of(live, plain_ids["NA"]) == "verified"
    assert int(p.inner_text("#review-total")) == total - 4
    assert "godkjent" in p.inner_text("#review-notice")
    # Both sodium values are released now: the patient's history of the test, newest first.
    p.goto(f"/orders/{plain['order']}")
    p.click("a[href*='/cumulative?test=NA']")
    p.wait_for_selector("h1:has-text('Kumulativt: NA')")
    rows = p.inner_text("table.cumulative tbody")
    assert rows.index(critical["SERUM"]) < rows.index(plain["SERUM"])  # the later tube first
    assert "170" in rows and "140" in rows
    shoot(p, "cumulative")


def test_one_language_per_page(page: Page, live: LiveServer) -> None:
    p = page
    sign_in(p, "lege")
    for path in ("/", "/review", "/worklist", "/messages", "/analysers", "/audit"):
        p.goto(path)
        text = p.inner_text("body")
        for english in ("Overview", "Review", "Sign out", "Verify", "Audit trail"):
            assert english not in text, (path, english)
    p.goto("/review?lang=en")
    text = p.inner_text("body")
    assert "Review" in text and "Sign out" in text
    for bokmal in ("Godkjenning", "Logg ut", "Oversikt"):
        assert bokmal not in text, bokmal
    p.goto("/no-such-page")  # the choice is remembered, and a missing page is a page
    assert "There is no such page" in p.inner_text("main")
    p.goto("/no-such-page?lang=nb")
    assert "Siden finnes ikke" in p.inner_text("main")
    shoot(p, "not-found")


def test_rejecting_at_the_scan_bench_stays_there(page: Page, live: LiveServer) -> None:
    p = page
    tubes = place_order(live, "HP-REJ1", ["HB"], "urgent")
    sign_in(p, "bio")
    p.goto("/specimens/receive")
    # As a scanner types: the number and Enter into the scan field.
    p.press("#accession_number", "End")
    p.type("#accession_number", tubes["EDTA"])
    p.press("#accession_number", "Enter")
    outcome = p.wait_for_selector("[data-outcome]")
    assert outcome is not None
    assert outcome.get_attribute("data-outcome") == "received", outcome.inner_text()
    p.click("summary:has-text('Avvis prøven')")
    p.select_option("#reject-reason", "RC")
    p.fill("#reject-comment", "koagel i røret")
    p.click("button:has-text('Avvis')")
    p.wait_for_selector("text=Prøven er avvist.")
    assert p.url.split("?")[0].endswith("/specimens/receive")
    assert p.evaluate("document.activeElement.id") == "accession_number"
    row = p.locator(".scans tbody tr").first
    assert tubes["EDTA"] in row.inner_text() and "Prøven er avvist" in row.inner_text()
    assert "Haster" in row.inner_text() and "Østbø, Kari Åse" in row.inner_text()
    shoot(p, "receipt-reject")


def test_operations_pages(page: Page, live: LiveServer) -> None:
    p = page
    tubes = place_order(live, "HP-OPS1", ["NA"], "routine")
    with live.sessions() as session:
        session.add(
            Hl7Message(
                direction=OUTBOUND,
                status="dead",
                partner="mllp://127.0.0.1:2576",
                control_id="LAB-DEAD-1",
                message_type="ORU^R01",
                raw=b"MSH|^~\\&|LAB|HOSP|EHR|HOSP|20261127081500||ORU^R01|LAB-DEAD-1|P|2.5.1",
                error="AE from the record: PID-3 unknown",
                attempts=10,
                next_attempt_at=datetime.now(UTC),
            )
        )
        session.add(
            UnmatchedResult(
                fingerprint="browser-unmatched-1",
                instrument="demo",
                specimen_id="999999",
                instrument_test_code="NA",
                test_code="NA",
                value="141",
                unit="mmol/L",
                instrument_flags="",
                result_status="F",
                operator="",
                reason="no specimen with accession number 999999",
                reason_code="specimen_unknown",
                reason_params={"number": "999999"},
                raw_record="R|1|^^^NA|141|mmol/L",
            )
        )
        users.create_user(
            session,
            actor=actor("admin"),
            username="vegg",
            display_name="Veggskjerm",
            roles=["display"],
            password=PASSWORD,
        )
        session.commit()
    sign_in(p, "lege")
    p.goto("/messages")
    p.wait_for_selector("text=LAB-DEAD-1")
    shoot(p, "messages")
    p.click("tr:has-text('LAB-DEAD-1') >> button.resend")
    p.wait_for_selector("text=Meldingen er lagt i kø for ny sending.")
    p.goto("/analysers")
    shoot(p, "analysers")
    p.goto("/analysers/unmatched")
    card = p.locator("section.unmatched:has-text('999999')")
    card.locator("input[name=accession_number]").fill(tubes["SERUM"])
    shoot(p, "unmatched")
    card.locator("button:has-text('Knytt til prøven')").click()
    p.wait_for_selector("text=Resultatet er knyttet til prøven")
    p.goto("/audit?action=hl7.")
    p.wait_for_selector("text=hl7.resend")
    shoot(p, "audit")
    p.goto(f"/orders/{tubes['order']}")
    p.click("text=Hvem har sett pasientens data")
    p.wait_for_selector("h1:has-text('Hvem har sett pasientens data')")
    assert "lege" in p.inner_text(".readers")
    shoot(p, "access")
    p.goto("/requisitions/new")
    p.fill("#national_id", "15038400000")
    p.click("button:has-text('Registrer rekvisisjonen')")
    p.wait_for_selector("#error-national_id")
    shoot(p, "requisition")
    p.click("text=Logg ut")
    p.fill("#username", "admin")
    p.fill("#password", PASSWORD)
    p.press("#password", "Enter")
    p.wait_for_selector("h1:has-text('Oversikt')")
    p.goto("/admin/users")
    p.wait_for_selector("text=Ny bruker")
    shoot(p, "users")
    # A new account gets its title (printed with "Godkjent av") in the same form.
    p.fill("#new-username", "kontor")
    p.fill("#new-name", "Kari Kontor")
    p.fill("#new-title", "seksjonsleder")
    p.check("#add-user input[value=admin]")
    p.fill("#new-password", PASSWORD)
    p.click("#add-user button[type=submit]")
    p.wait_for_selector("#title-kontor")
    assert p.input_value("#title-kontor") == "seksjonsleder"
    p.click("text=Logg ut")
    p.fill("#username", "vegg")
    p.fill("#password", PASSWORD)
    p.press("#password", "Enter")
    p.wait_for_url("**/wall")
    assert "Østbø" not in p.inner_text("body")
    shoot(p, "wall")
