"""Every page test runs with strict translations: a text missing from a catalog fails it.

The browser tests of a module share one headless Chromium (Debian's, `make system-deps`) and a fresh
bokmål page per test, on the `live` server their module starts (tests/web/live_server.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from lab.web import i18n
from tests.web.live_server import CHROMIUM, CHROMIUM_ARGS, LiveServer


@pytest.fixture(autouse=True)
def strict_translations() -> Iterator[None]:
    i18n.mode.strict = True
    yield
    i18n.mode.strict = False


# Per module, not per session: while Playwright's sync API is open its event loop runs in this
# thread, and tests after the browser modules that call asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make system-deps)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, live: LiveServer) -> Iterator[Page]:
    """A fresh browser context (no cookies) in bokmål on the module's live server."""
    context = browser.new_context(
        base_url=live.base_url, viewport={"width": 1366, "height": 900}, locale="nb-NO"
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    # Whatever the page's Content-Security-Policy refuses (an inline style or script) is a page
    # that does not look or work as built: collected here and failed after the test.
    refused: list[str] = []
    page.on(
        "console",
        lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield page
    context.close()
    assert not refused, f"the Content-Security-Policy refused: {refused}"
