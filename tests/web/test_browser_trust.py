"""Trust on the pages, in headless Chromium (issue 14): the user page offers no clinical role to
give and revokes a token; search sends no fødselsnummer in the address; a value typed in is
released by another person, and the review page says why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from lab.audit import Actor
from lab.orders import service as orders
from lab.users import tokens
from testkit.database import PASSWORD
from testkit.orders import place
from testkit.patients import KARI_FNR
from tests.conftest import actor
from tests.web.live_server import CHROMIUM, LiveServer, run_live_server

pytestmark = pytest.mark.browser

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (make system-deps)", allow_module_level=True)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from run_live_server(tmp_path_factory.mktemp("browser-trust"))


def sign_in(page: Page, username: str) -> None:
    page.goto("/")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    page.wait_for_selector("h1:has-text('Oversikt')")


def test_the_administrator_revokes_a_token_and_gives_no_clinical_role(
    page: Page, live: LiveServer
) -> None:
    with live.sessions() as session:
        made = tokens.create_token(
            session, actor=Actor.system("cli"), username="bio", label="skanner"
        )
        session.commit()
    sign_in(page, "admin")
    page.goto("/admin/users")
    row = page.locator("#user-bio")
    # Physician is not the administrator's to give: shown, but cannot be ticked.
    assert row.locator("input[name=roles][value=physician]").is_disabled()
    assert row.locator("input[name=roles][value=technician]").is_enabled()  # may be taken away
    assert page.locator("#operator-roles").is_visible()
    assert page.locator("#user-bio form[action$='/password']").count() == 0
    row.locator("td.tokens summary").click()
    token_row = page.locator(f"#token-{made.id}")
    assert "gyldig" in token_row.inner_text() and "skanner" in token_row.inner_text()
    token_row.locator("button:has-text('Trekk tilbake')").click()
    page.wait_for_selector("text=API-nøkkelen er trukket tilbake.")
    answer = page.request.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {made.token}", "Cookie": ""}
    )
    assert answer.status == 401


def test_search_and_four_eyes(page: Page, live: LiveServer) -> None:
    with live.sessions() as session:
        placed = place(session, actor("interface"), placer="HP-TRUST-1", tests=["NA"])
        tube = next(s.accession_number for s in orders.specimens_of(session, placed))
        session.commit()
    sign_in(page, "lege")
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.fill("#search-q", KARI_FNR)
    page.press("#search-q", "Enter")
    page.wait_for_selector("text=Østbø")
    assert not [url for url in requests if KARI_FNR in url]  # the number went in the body

    # The lab physician receives the tube and types the value in...
    page.goto("/specimens/receive")
    expect(page.locator("#accession_number")).to_be_focused()  # autofocus may follow the load
    page.keyboard.type(tube + "\n")
    page.wait_for_selector(f"[data-outcome=received] >> text={tube}")
    page.goto(f"/specimens/{tube}/results")
    page.fill("#value_NA", "141")
    page.click("text=Lagre resultater")
    page.wait_for_selector("text=Resultatene er lagret.")
    # ...and cannot release it: another reviewer must.
    page.goto("/review")
    page.locator(f"#specimen-{tube} tr:has-text('NA') button.verify-one").click()
    page.wait_for_selector("text=Du skrev inn dette resultatet selv")
    page.click("text=Logg ut")
    page.wait_for_selector("text=Du er logget ut.")
