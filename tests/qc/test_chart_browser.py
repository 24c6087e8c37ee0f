"""The QC pages in headless Chromium: the lock on the overview, the Levey-Jennings chart with the
rejected point and its rule, and a documented override typed in by the lab physician."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page

from lab.qc import service as qc
from testkit.database import PASSWORD
from tests.qc.builders import ANALYSER, T0, control_result
from tests.web.live_server import CHROMIUM, LiveServer, run_live_server

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (make system-deps)", allow_module_level=True)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from run_live_server(tmp_path_factory.mktemp("qc-browser"))


def seed_runs(live: LiveServer) -> None:
    """Thirty in-control NA runs on the demo analyser, then one with level 1 at +3.5 SD."""
    zs = [0.4, -0.6, 1.1, -0.2, 0.8, -1.3, 0.1, -0.5, 1.6, -0.9] * 3 + [3.5]
    with live.sessions() as session:
        for index, z in enumerate(zs):
            at = T0 + timedelta(hours=8 * index)
            ids = [
                control_result(session, control_id="QC1-DEMO", value=f"{140 + 1.2 * z:.2f}", at=at),
                control_result(
                    session, control_id="QC2-DEMO", value=f"{120 - 1.1 * z / 2:.2f}", at=at
                ),
            ]
            qc.take_analyser_results(session, actor=ANALYSER, instrument="demo", qc_result_ids=ids)
        session.commit()


def sign_in(page: Page, username: str) -> None:
    page.goto("/qc?lang=en")
    assert "/login" in page.url
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    page.wait_for_selector("h1:has-text('Internal quality control')")


def test_the_chart_shows_the_rejected_point_and_the_lock_can_be_released(
    page: Page, live: LiveServer
) -> None:
    seed_runs(live)
    sign_in(page, "lege")
    page.goto("/qc?instrument=demo&lang=en")
    row = page.locator("tr#qc-NA")
    assert "Locked" in row.inner_text() and "1-3s" in row.inner_text()
    refused: list[str] = []  # what the page's Content-Security-Policy blocked, if anything
    page.on(
        "console",
        lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.click("tr#qc-NA a:has-text('NA')")
    page.wait_for_selector("section.lj-chart img.lj")
    charts = page.locator("section.lj-chart")
    assert charts.count() == 2
    level1 = page.locator("section.lj-chart[data-level='1'] img.lj")
    # The image was drawn by the browser (an SVG the browser cannot read has no natural size).
    assert level1.evaluate("img => img.complete && img.naturalWidth > 600")
    source = level1.get_attribute("src") or ""
    assert source.startswith("data:image/svg+xml;base64,")
    svg_text = base64.b64decode(source.split(",", 1)[1]).decode("utf-8")
    assert "1-3s" in svg_text  # the rule is written beside the rejected point
    assert "+3s" in svg_text and "-2s" in svg_text  # the SD lines are labelled
    box = level1.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 200
    # Inline SVG had its colours refused by the policy and showed as a black box.
    assert not refused, refused
    assert "rejected" in page.locator("table.qc-runs tbody tr").first.inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "qc-chart.png"), full_page=True)

    page.goto("/qc?instrument=demo&lang=en")
    page.fill("#reason-NA", "short")
    page.click("tr#qc-NA button:has-text('Release the lock')")
    assert "at least 10 characters" in page.locator("tr#qc-NA .field-error").inner_text()
    assert page.input_value("#reason-NA") == "short"
    page.fill("#reason-NA", "level 1 vial was contaminated; new vial in control on analyser 2")
    page.click("tr#qc-NA button:has-text('Release the lock')")
    page.wait_for_url("**/qc?instrument=demo")
    assert "In control" in page.locator("tr#qc-NA").inner_text()
