"""The test catalogue in headless Chromium, reached from the menu; its screenshot goes to
docs/screenshots/catalog.png."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from tests.web.live_server import LiveServer, run_live_server
from tests.web.test_browser import shoot, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from run_live_server(tmp_path_factory.mktemp("catalog"))


def test_the_catalogue_from_the_menu(page: Page, live: LiveServer) -> None:
    sign_in(page, "bio")
    page.click("nav >> text=Analyseoversikt")
    page.wait_for_selector("h1:has-text('Analyseoversikt')")
    row = page.locator("#test-KREA").inner_text()
    assert "14682-9" in row and "2160-0" in row and "NPU" in row
    shoot(page, "catalog")
