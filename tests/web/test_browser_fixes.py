"""Fix before release in headless Chromium: replace by keyboard from the review page, rerun
and discard with the mouse; the page stays in place and says what happened, in bokmål."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from lab.specimens import service as specimens
from tests.web.live_server import LiveServer, run_live_server
from tests.web.test_browser import place_order, shoot, sign_in
from tests.web.test_browser_screens import results_in, status_of

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from run_live_server(tmp_path_factory.mktemp("fixes"))


def test_fix_before_release_from_the_review_page(page: Page, live: LiveServer) -> None:
    p = page
    tube = place_order(live, "HP-FXB1", ["NA", "K", "CRP"], "stat")
    ids = results_in(live, tube["SERUM"], {"NA": "14", "K": "4.1", "CRP": "12"})
    sign_in(p, "lege")
    p.goto("/review")
    total = int(p.inner_text("#review-total"))
    assert p.evaluate("document.activeElement.dataset.result") == str(ids["NA"])
    # The sodium was sent wrong (14 for 140): f opens the fix forms on the value field.
    p.keyboard.press("f")  # the forms are fetched, then the value field has the cursor
    p.wait_for_selector(f"#fix-value-{ids['NA']}:focus")
    p.keyboard.type("140")
    p.keyboard.press("Tab")
    p.keyboard.type("feil overført fra analysatoren")
    shoot(p, "review-fix")
    p.keyboard.press("Enter")
    p.wait_for_selector(f"tr#result-{ids['NA']} .fix-note")
    row = p.inner_text(f"tr#result-{ids['NA']}")
    assert "140" in row and "Erstattet (var 14): feil overført fra analysatoren – lege" in row
    assert "erstattet" in p.inner_text("#review-notice")
    assert int(p.inner_text("#review-total")) == total  # still waits for review
    assert status_of(live, ids["NA"]) == "awaiting_review"
    # The potassium goes back to the analyser: it leaves the queue, the place is kept.
    p.click(f"#fix-{ids['K']} summary")
    p.fill(f"#fix-reason-{ids['K']}", "kontroll av hemolyse")
    p.click(f"#fix-{ids['K']} button.fix-rerun")
    p.wait_for_selector(f"tr#result-{ids['K']}", state="detached")
    assert status_of(live, ids["K"]) == "preliminary"
    assert int(p.inner_text("#review-total")) == total - 1
    assert "analysatoren" in p.inner_text("#review-notice")
    with live.sessions() as session:
        pending = specimens.pending_tests(
            session, specimens.get_by_accession(session, tube["SERUM"])
        )
        assert [t.test.code for t in pending] == ["K"]  # the host query answers it again
    # The CRP is discarded; without a reason the page says so next to the form.
    p.click(f"#fix-{ids['CRP']} summary")
    p.click(f"#fix-{ids['CRP']} button.fix-discard")
    p.wait_for_selector(f"#fix-{ids['CRP']} .field-error")
    assert "Skriv en begrunnelse." in p.inner_text(f"#fix-{ids['CRP']}")
    assert status_of(live, ids["CRP"]) == "awaiting_review"
    p.fill(f"#fix-reason-{ids['CRP']}", "feil rør")
    p.click(f"#fix-{ids['CRP']} button.fix-discard")
    p.wait_for_selector(f"tr#result-{ids['CRP']}", state="detached")
    assert status_of(live, ids["CRP"]) == "cancelled"
    assert int(p.inner_text("#review-total")) == total - 2
    text = p.inner_text("body")
    for english in ("Replace", "Rerun", "Discard", "reason", "Fix before release"):
        assert english not in text, english


def test_a_technician_fixes_but_does_not_discard(page: Page, live: LiveServer) -> None:
    p = page
    tube = place_order(live, "HP-FXB2", ["NA"], "routine")
    ids = results_in(live, tube["SERUM"], {"NA": "1400"})
    sign_in(p, "bio")
    p.goto(f"/results/{ids['NA']}")
    assert p.locator("button.fix-discard").count() == 0
    p.click(f"#fix-{ids['NA']} summary")
    p.fill(f"#fix-value-{ids['NA']}", "140")
    p.fill(f"#fix-reason-{ids['NA']}", "en null for mye")
    p.click(f"#fix-{ids['NA']} button.fix-replace")
    p.wait_for_selector("text=Verdien er erstattet")
    assert "Erstattet (var 1400): en null for mye – bio" in p.inner_text("main")
    assert status_of(live, ids["NA"]) == "awaiting_review"


# English the rules and services write, which a bokmål page must say in bokmål.
ENGLISH = (
    "the ",
    "analyser flag",
    "within",
    "critical limit",
    "changed from",
    "reference interval",
    "measured",
    "rerun",
    "replaced",
    "released",
    "chosen",
    "awaiting",
    "preliminary",
    "cancelled",
    "verified",
    "Verify",
    "told ",
)


def test_review_specimen_and_result_pages_speak_bokmal_only(page: Page, live: LiveServer) -> None:
    from datetime import UTC, datetime, timedelta

    from lab.results import fixes
    from lab.results import service as results
    from lab.results.judging import ActiveRules
    from tests.conftest import actor
    from tests.rules.helpers import demo_ruleset

    p = page
    rules = ActiveRules(autoverification=demo_ruleset())
    at = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    first = place_order(live, "HP-NB1", ["KREA"], "routine")
    second = place_order(live, "HP-NB2", ["KREA", "K", "NA", "CRP"], "routine")
    ids: dict[str, int] = {}
    with live.sessions() as session:
        for tube, code, value, when, flags in (
            (first["SERUM"], "KREA", "84", at, ""),
            (second["SERUM"], "KREA", "160", at + timedelta(hours=20), "CLOT"),
            (second["SERUM"], "K", "7.1", at + timedelta(hours=20), ""),
            (second["SERUM"], "NA", "14", at + timedelta(hours=20), ""),
            (second["SERUM"], "CRP", "12", at + timedelta(hours=20), ""),
        ):
            outcome = results.record(
                session,
                actor=actor("instrument", "cobas"),
                measurement=results.Measurement(
                    accession_number=tube,
                    test_code=code,
                    value=value,
                    observed_at=when,
                    instrument="cobas-c311",
                    instrument_flags=flags,
                    flag_profile="cobas",
                ),
                rules=rules if code in ("KREA", "K") else None,  # NA and CRP wait for a person
            )
            assert outcome.result_id is not None
            ids[code] = outcome.result_id
        lege = actor("physician")
        fixes.replace(session, actor=lege, result_id=ids["NA"], value="140", reason="tastefeil")
        fixes.discard(session, actor=lege, result_id=ids["CRP"], reason="feil rør")
        session.commit()
    sign_in(p, "lege")
    pages = [
        "/review",
        f"/specimens/{second['SERUM']}",
        f"/orders/{second['order']}",
        *(f"/results/{ids[code]}" for code in ("KREA", "K", "NA", "CRP")),
    ]
    for path in pages:
        p.goto(path)
        text = p.inner_text("main")
        found = [english for english in ENGLISH if english in text]
        assert not found, (path, found)
    p.goto("/review")
    row = p.inner_text(f"tr#result-{ids['KREA']}")
    assert "endret fra 84 til 160 (grense" in row and "analysatorflagg CLOT" in row
    assert "over den kritiske grensen" in p.inner_text(f"tr#result-{ids['K']}")
    shoot(p, "review-holds")
