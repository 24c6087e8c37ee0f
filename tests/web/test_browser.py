"""The bench as a person uses it, in headless Chromium: sign in, scan, enter, verify, print.

Screenshots of the main pages go to docs/screenshots/ (the names are fixed, so each run
overwrites the last).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from pypdf import PdfReader

from lab.orders import service as orders
from testkit.database import PASSWORD
from testkit.orders import place
from tests.conftest import actor
from tests.web.live_server import CHROMIUM, LiveServer, run_live_server

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (make system-deps)", allow_module_level=True)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from run_live_server(tmp_path_factory.mktemp("browser"))


def place_order(live: LiveServer, placer: str, tests: list[str], priority: str) -> dict[str, str]:
    """An order from the record; returns the accession number per container."""
    with live.sessions() as session:
        placed = place(session, actor("interface"), placer=placer, tests=tests, priority=priority)
        tubes = {s.container: s.accession_number for s in orders.specimens_of(session, placed)}
        session.commit()
        tubes["order"] = placed.filler_order_number
        return tubes


def sign_in(page: Page, username: str) -> None:
    page.goto("/")
    assert "/login" in page.url
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    page.wait_for_selector("h1:has-text('Oversikt')")


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_a_shift_at_the_bench(page: Page, live: LiveServer) -> None:
    p = page
    tubes = place_order(live, "HP-B1", ["HB", "NA", "K", "CRP"], "stat")
    place_order(live, "HP-B2", ["HB", "GLUK"], "routine")
    sign_in(p, "bio")
    assert p.locator(".tile").first.inner_text().startswith("4")  # 4 tubes expected
    shoot(p, "overview")

    # Receipt: the scanner types the number and Enter; the answer comes without a page load.
    p.click("nav >> text=Prøvemottak")
    # Chromium moves autofocus at a rendering step that may come after the load event on a
    # busy machine: wait for the focus (up to the expect timeout) instead of reading it once.
    expect(p.locator("#accession_number")).to_be_focused()
    p.keyboard.type(tubes["SERUM"])
    p.keyboard.press("Enter")
    p.wait_for_selector("[data-outcome=received]")
    assert "Østbø, Kari Åse" in p.inner_text("#receipt-panel")
    assert p.evaluate("document.activeElement.id") == "accession_number"
    p.keyboard.type(tubes["EDTA"] + "\n")
    p.wait_for_selector(f"[data-outcome=received] >> text={tubes['EDTA']}")
    p.keyboard.type(tubes["EDTA"] + "\n")  # the same tube again
    p.wait_for_selector("[data-outcome=already]")
    p.keyboard.type("2612345678\n")  # a misread barcode
    p.wait_for_selector("[data-outcome=check_digit], [data-outcome=unknown]")
    assert p.locator(".scans tbody tr").count() == 4
    assert p.evaluate("document.activeElement.id") == "accession_number"
    shoot(p, "receipt")

    # Result entry from the worklist: stat first.
    p.click("nav >> text=Arbeidsliste")
    p.click(f"tr:has-text('{tubes['SERUM']}') >> text=Registrer resultater")
    p.fill("#value_NA", "abc")
    p.fill("#value_K", "7,1")
    p.fill("#value_CRP", "4")
    p.click("text=Lagre resultater")
    p.wait_for_selector("#error_NA")
    assert p.input_value("#value_K") == "7,1"  # the input is kept
    p.fill("#value_NA", "128")
    p.click("text=Lagre resultater")
    p.wait_for_selector("text=Resultatene er lagret.")
    shoot(p, "result-entry")

    # A technician cannot verify: sign out, the lab physician signs in.
    p.click("text=Logg ut")
    p.wait_for_selector("text=Du er logget ut.")
    sign_in(p, "lege")
    p.click("nav >> text=Godkjenning")
    p.wait_for_selector(".flag-HH")
    shoot(p, "review")
    group = p.locator(f"#specimen-{tubes['SERUM']}")
    group.locator("button.verify-all").click()  # CRP is the only unremarkable one
    p.wait_for_selector("text=1 resultater er godkjent.")
    # The critical potassium: without the call documented it is refused, with it released.
    critical = p.locator("form.critical-form")
    critical.locator("button").click()
    p.wait_for_selector(".field-error")
    assert "telefonen er dokumentert" in p.inner_text(".field-error")
    critical = p.locator("form.critical-form")
    critical.locator("input[name=notified_person]").fill("Lege Lise, MED3")
    critical.locator("input[name=read_back]").check()
    critical.locator("button").click()
    p.wait_for_selector("text=Resultatet er godkjent.")
    assert p.locator("form.critical-form").count() == 0
    p.locator("tr:has-text('NA') button.verify-one").click()
    p.wait_for_selector("text=Ingen resultater venter på godkjenning.")

    # The order page, and the label as PDF with the accession number on it.
    p.fill("#search-q", "HP-B1")
    p.press("#search-q", "Enter")
    p.wait_for_selector(f"h1:has-text('{tubes['order']}')")
    assert p.locator("tr:has-text('K ') .status-verified").count() >= 1
    shoot(p, "order")
    label = p.request.get(f"/specimens/{tubes['SERUM']}/label.pdf")
    assert label.ok and label.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(label.body()))
    assert tubes["SERUM"] in "".join(sheet.extract_text() for sheet in reader.pages)
