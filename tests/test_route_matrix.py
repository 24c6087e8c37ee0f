"""Every route, every role: one declared matrix, walked over all of `app.routes` (issue 14).

Each route the app serves (JSON API and HTML pages) has one rule in `MATRIX`: open to anyone,
open to anyone signed in, a permission (whoever's roles grant it: lab/users/roles.py), or a
named set of roles where the route decides inside. A route without a rule fails the test, so a
new route cannot ship unconsidered. Then every route is called as every role and as nobody:

- nobody: 401 with `WWW-Authenticate: Bearer` on the API, a redirect to the sign-in page on a
  page; a role the rule does not admit: 403; a role it admits: neither (a 404 or 422 for the
  made-up ids of a POST is fine), and never a 5xx.
- Pages are for people: machine accounts (`instrument`, `interface`) get 403 on every page.
- People sign in through the form (session cookie, CSRF token in forms and the header);
  machine accounts use their API token, as they do in service.
- GET routes are called with the ids of a real order, specimen, result and patient, so a page
  that shows a patient shows it; the `instrument` account must see no name or fødselsnummer
  on any of them. Unsafe methods get made-up ids: the walk changes nothing that matters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.tables import ApiToken, Patient, Result
from lab.users.roles import GRANTS, MACHINE_ROLES, Role
from lab.users.roles import Permission as P
from testkit.database import PASSWORD
from testkit.orders import place
from testkit.patients import KARI_FNR
from tests.conftest import actor

OPEN = "open"
SIGNED_IN = "signed in"
Rule = str | P | tuple[P, ...] | frozenset[Role]  # a tuple: every one of the permissions
R = Role

# The message log and the turnaround report decide inside who sees what (content only for the
# physician and the record's interface, each look audited).
MESSAGES = frozenset({R.ADMIN, R.PHYSICIAN, R.INTERFACE})
RESEND = frozenset({R.ADMIN, R.PHYSICIAN})
# Fixing a value before release is a person's: entering results and reading the patient's.
FIX = (P.ENTER_RESULTS, P.READ_PATIENT_DATA)
TURNAROUND = frozenset({R.ADMIN, R.PHYSICIAN})

MATRIX: dict[str, Rule] = {
    "GET /healthz": OPEN,
    "GET /docs": OPEN,
    "GET /login": OPEN,
    "POST /login": OPEN,
    "POST /logout": SIGNED_IN,
    "GET /": SIGNED_IN,
    "GET /account": SIGNED_IN,
    "POST /account/tokens": SIGNED_IN,
    "POST /account/tokens/{token_id}/revoke": SIGNED_IN,
    # Who am I, my own tokens (made from a session only), revoking a token (mine; admin: any).
    "GET /api/v1/me": SIGNED_IN,
    "GET /api/v1/me/tokens": SIGNED_IN,
    "POST /api/v1/me/tokens": SIGNED_IN,
    "POST /api/v1/tokens/{token_id}/revoke": SIGNED_IN,
    "POST /api/v1/users/{username}/tokens": SIGNED_IN,
    "GET /api/v1/users": P.MANAGE_USERS,
    "POST /api/v1/users": P.MANAGE_USERS,
    "GET /api/v1/users/{username}/tokens": P.MANAGE_USERS,
    "POST /api/v1/users/{username}/disable": P.MANAGE_USERS,
    "POST /api/v1/users/{username}/enable": P.MANAGE_USERS,
    "PUT /api/v1/users/{username}/roles": P.MANAGE_USERS,
    "POST /api/v1/patients": P.MANAGE_PATIENTS,
    "GET /api/v1/patients": P.READ_PATIENT_DATA,
    "GET /api/v1/patients/{patient_id}": P.READ_PATIENT_DATA,
    "POST /api/v1/patients/merge": P.MERGE_PATIENTS,
    "GET /api/v1/patients/{patient_id}/audit": P.READ_AUDIT,
    "GET /api/v1/catalog/tests": P.READ_CATALOG,
    "GET /api/v1/catalog/tests/{code}": P.READ_CATALOG,
    "PUT /api/v1/catalog/tests/{code}": P.MANAGE_CATALOG,
    "GET /api/v1/catalog/panels": P.READ_CATALOG,
    "POST /api/v1/orders": P.PLACE_ORDERS,
    "GET /api/v1/orders": P.READ_PATIENT_DATA,
    "GET /api/v1/orders/{filler_order_number}": P.READ_PATIENT_DATA,
    "POST /api/v1/orders/{filler_order_number}/tests": P.PLACE_ORDERS,
    "POST /api/v1/orders/{filler_order_number}/cancel": P.CANCEL_ORDERS,
    "GET /api/v1/specimens/{accession_number}": P.READ_PATIENT_DATA,
    "POST /api/v1/specimens/{accession_number}/collect": P.HANDLE_SPECIMENS,
    "POST /api/v1/specimens/{accession_number}/receive": P.HANDLE_SPECIMENS,
    "POST /api/v1/specimens/{accession_number}/reject": P.HANDLE_SPECIMENS,
    "POST /api/v1/specimens/{accession_number}/dispose": P.HANDLE_SPECIMENS,
    "POST /api/v1/specimens/{accession_number}/aliquots": P.HANDLE_SPECIMENS,
    "GET /api/v1/results": P.READ_PATIENT_DATA,
    "GET /api/v1/results/review-queue": P.VERIFY_RESULTS,
    "POST /api/v1/results": P.ENTER_RESULTS,
    "GET /api/v1/results/{result_id}": P.READ_PATIENT_DATA,
    "POST /api/v1/results/{result_id}/verify": P.VERIFY_RESULTS,
    "POST /api/v1/results/{result_id}/correct": P.CORRECT_RESULTS,
    "POST /api/v1/results/{result_id}/choose": P.VERIFY_RESULTS,
    "POST /api/v1/results/{result_id}/set-aside": P.VERIFY_RESULTS,
    "POST /api/v1/results/{result_id}/cancel": P.CORRECT_RESULTS,
    "POST /api/v1/results/{result_id}/replace": FIX,
    "POST /api/v1/results/{result_id}/rerun": FIX,
    "POST /api/v1/results/{result_id}/discard": P.VERIFY_RESULTS,
    "GET /api/v1/messages": MESSAGES,
    "GET /api/v1/messages/{message_id}": MESSAGES,
    "POST /api/v1/messages/{message_id}/resend": RESEND,
    "GET /api/v1/instruments": P.VIEW_ANALYSERS,
    "GET /api/v1/instruments/unmatched": P.READ_PATIENT_DATA,
    "POST /api/v1/instruments/unmatched/{unmatched_id}/resolve": P.RESOLVE_UNMATCHED,
    "POST /api/v1/instruments/unmatched/{unmatched_id}/discard": P.RESOLVE_UNMATCHED,
    "GET /api/v1/instruments/qc": P.VIEW_ANALYSERS,
    "GET /api/v1/instruments/{name}/worklist": P.READ_WORKLIST,
    "GET /api/v1/reports/turnaround": TURNAROUND,
    "GET /api/v1/qc/status": P.VIEW_ANALYSERS,
    "GET /api/v1/qc/runs": P.VIEW_ANALYSERS,
    "POST /api/v1/qc/runs": P.ENTER_QC,
    "POST /api/v1/qc/locks/override": P.OVERRIDE_QC_LOCK,
    "POST /api/v1/qc/runs/{run_id}/actions": P.ENTER_QC,
    "GET /api/v1/qc/locks/history": P.VIEW_ANALYSERS,
    "GET /api/v1/qc/lookback": P.READ_PATIENT_DATA,
    "GET /api/v1/qc/queue": P.VIEW_ANALYSERS,
    "POST /api/v1/qc/queue/{problem_id}/retry": P.ENTER_QC,
    "POST /api/v1/qc/queue/{problem_id}/discard": P.ENTER_QC,
    "GET /api/v1/qc/materials": P.VIEW_ANALYSERS,
    "POST /api/v1/qc/materials": P.MANAGE_QC,
    "GET /api/v1/qc/lots": P.VIEW_ANALYSERS,
    "POST /api/v1/qc/lots": P.MANAGE_QC,
    "PUT /api/v1/qc/control-ids": P.MANAGE_QC,
    "PUT /api/v1/qc/targets": P.MANAGE_QC,
    "PUT /api/v1/qc/policies": P.MANAGE_QC,
    "PUT /api/v1/qc/moving-settings": P.MANAGE_QC,
    "GET /api/v1/qc/report": P.VIEW_ANALYSERS,
    "GET /api/v1/rules": P.MANAGE_RULES,
    "GET /api/v1/rules/{kind}/{version}": P.MANAGE_RULES,
    "POST /api/v1/rules/{kind}": P.MANAGE_RULES,
    "POST /api/v1/rules/{kind}/{version}/state": P.MANAGE_RULES,
    "GET /api/v1/rules/autoverification/{version}/shadow": P.MANAGE_RULES,
    # Pages.
    "GET /wall": P.VIEW_OVERVIEW,
    "GET /specimens/receive": P.HANDLE_SPECIMENS,
    "POST /specimens/receive": P.HANDLE_SPECIMENS,
    "GET /specimens/{accession_number}": P.READ_PATIENT_DATA,
    "POST /specimens/{accession_number}/reject": P.HANDLE_SPECIMENS,
    "GET /specimens/{accession_number}/label.pdf": P.READ_PATIENT_DATA,
    "GET /search": P.READ_PATIENT_DATA,
    "POST /search": P.READ_PATIENT_DATA,
    "GET /orders/{filler_order_number}": P.READ_PATIENT_DATA,
    "POST /orders/{filler_order_number}/tests": P.PLACE_ORDERS,
    "POST /orders/{filler_order_number}/cancel": P.CANCEL_ORDERS,
    "GET /orders/{filler_order_number}/labels.pdf": P.READ_PATIENT_DATA,
    "GET /orders/{filler_order_number}/report.pdf": P.READ_PATIENT_DATA,
    "GET /worklist": P.ENTER_RESULTS,
    "GET /specimens/{accession_number}/results": P.ENTER_RESULTS,
    "POST /specimens/{accession_number}/results": P.ENTER_RESULTS,
    "GET /review": P.READ_PATIENT_DATA,
    "POST /results/{result_id}/verify": P.VERIFY_RESULTS,
    "POST /specimens/{accession_number}/verify-unremarkable": P.VERIFY_RESULTS,
    "POST /specimens/{accession_number}/critical-call": P.VERIFY_RESULTS,
    "GET /results/{result_id}": P.READ_PATIENT_DATA,
    "GET /results/{result_id}/fix-form": P.READ_PATIENT_DATA,
    "POST /results/{result_id}/correct": P.CORRECT_RESULTS,
    "POST /results/{result_id}/choose": P.VERIFY_RESULTS,
    "POST /results/{result_id}/set-aside": P.VERIFY_RESULTS,
    "GET /patients/{patient_id}/cumulative": P.READ_PATIENT_DATA,
    "GET /patients/{patient_id}/cumulative.pdf": P.READ_PATIENT_DATA,
    "POST /results/{result_id}/replace": P.ENTER_RESULTS,
    "POST /results/{result_id}/rerun": P.ENTER_RESULTS,
    "POST /results/{result_id}/discard": P.VERIFY_RESULTS,
    "GET /admin/users": P.MANAGE_USERS,
    "POST /admin/users": P.MANAGE_USERS,
    "POST /admin/users/{username}/name": P.MANAGE_USERS,
    "POST /admin/users/{username}/password": P.MANAGE_USERS,
    "POST /admin/users/{username}/active": P.MANAGE_USERS,
    "POST /admin/users/{username}/unlock": P.MANAGE_USERS,
    "POST /admin/users/{username}/roles": P.MANAGE_USERS,
    "POST /admin/users/tokens/{token_id}/revoke": P.MANAGE_USERS,
    "GET /qc": P.VIEW_ANALYSERS,
    "GET /qc/chart": P.VIEW_ANALYSERS,
    "POST /qc/override": P.OVERRIDE_QC_LOCK,
    "POST /qc/runs/{run_id}/action": P.ENTER_QC,
    "GET /qc/lookback": P.READ_PATIENT_DATA,
    "GET /qc/queue": P.VIEW_ANALYSERS,
    "POST /qc/queue/{problem_id}/retry": P.ENTER_QC,
    "POST /qc/queue/{problem_id}/discard": P.ENTER_QC,
    "GET /qc/setup": P.MANAGE_QC,
    "POST /qc/setup/lot": P.MANAGE_QC,
    "POST /qc/setup/target": P.MANAGE_QC,
    "GET /qc/report": P.VIEW_ANALYSERS,
    "GET /messages": MESSAGES,
    "GET /messages/{message_id}": MESSAGES,
    "POST /messages/{message_id}/resend": RESEND,
    "GET /analysers": P.VIEW_ANALYSERS,
    "GET /analysers/unmatched": P.READ_PATIENT_DATA,
    "POST /analysers/unmatched/{unmatched_id}/resolve": P.RESOLVE_UNMATCHED,
    "POST /analysers/unmatched/{unmatched_id}/discard": P.RESOLVE_UNMATCHED,
    "GET /audit": P.READ_AUDIT,
    "GET /patients/{patient_id}/access": P.READ_AUDIT,
    "GET /rules": P.MANAGE_RULES,
    "GET /catalog": P.READ_CATALOG,
    "POST /rules/load": P.MANAGE_RULES,
    "GET /rules/{kind}/{version}": P.MANAGE_RULES,
    "POST /rules/{kind}/{version}/dry-run": P.MANAGE_RULES,
    "POST /rules/{kind}/{version}/state": P.MANAGE_RULES,
    "GET /requisitions/new": P.PLACE_ORDERS,
    "POST /requisitions/new": P.PLACE_ORDERS,
}

ROLES = list(Role)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_PARAM = re.compile(r"\{([^}]+)\}")


def app_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, routers included at any depth."""
    found: list[tuple[str, str]] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:  # FastAPI's included router
                walk(included.routes, prefix + (route.include_context.prefix or ""))
            elif isinstance(route, APIRoute):
                found.extend((m, prefix + route.path) for m in sorted(route.methods) if m != "HEAD")

    walk(app.routes, "")
    return found


def is_page(path: str) -> bool:
    return not path.startswith("/api/")


def admits(rule: Rule, role: Role, path: str) -> bool:
    if rule == OPEN:
        return True
    if role in MACHINE_ROLES and is_page(path):
        return False  # pages are for people
    if rule == SIGNED_IN:
        return True
    if isinstance(rule, P):
        return rule in GRANTS[role]
    if isinstance(rule, tuple):
        return all(permission in GRANTS[role] for permission in rule)
    assert isinstance(rule, frozenset)
    return role in rule


@dataclass
class Caller:
    client: TestClient
    csrf: str = ""  # a person's session; empty for a machine's token


@dataclass(frozen=True)
class Ids:
    real: dict[str, str]
    patient_texts: tuple[str, ...]


@pytest.fixture
def ids(db: Session, client: TestClient, as_role: dict[str, dict[str, str]]) -> Ids:
    placed = place(db, actor("interface"), placer="HP-MATRIX-1", tests=["NA"])
    db.commit()
    order = client.get(
        f"/api/v1/orders/{placed.filler_order_number}", headers=as_role["technician"]
    ).json()
    accession = order["specimens"][0]["accession_number"]
    client.post(f"/api/v1/specimens/{accession}/receive", headers=as_role["technician"])
    entered = client.post(
        "/api/v1/results",
        json={"accession_number": accession, "test_code": "NA", "value": "141"},
        headers=as_role["technician"],
    )
    assert entered.status_code == 201, entered.text
    patient = db.scalar(select(Patient).where(Patient.id == placed.patient_id))
    assert patient is not None
    result = db.scalar(select(Result).order_by(Result.id.desc()))
    assert result is not None
    token = db.scalar(select(ApiToken.id).order_by(ApiToken.id))
    return Ids(
        real={
            "patient_id": str(patient.id),
            "filler_order_number": placed.filler_order_number,
            "accession_number": accession,
            "result_id": str(result.id),
            "token_id": str(token),
            "username": "t-technician",
            "code": "NA",
            "name": "demo",
            "kind": "autoverification",
            "version": "1",
            "message_id": "1",
            "unmatched_id": "1",
            "problem_id": "1",
        },
        patient_texts=("Østbø", KARI_FNR),
    )


@pytest.fixture
def callers(client: TestClient, tokens: dict[str, str]) -> Iterator[dict[str, Caller]]:
    """A caller per role: people signed in through the form, machines with their token; and
    nobody."""
    made: dict[str, Caller] = {"nobody": Caller(TestClient(client.app))}
    for role in ROLES:
        browser = TestClient(client.app)
        if role in MACHINE_ROLES:
            browser.headers["Authorization"] = f"Bearer {tokens[role.value]}"
            made[role.value] = Caller(browser)
            continue
        page = browser.get("/login")
        signed = browser.post(
            "/login",
            data={
                "username": f"t-{role.value}",
                "password": PASSWORD,
                "csrf_token": _CSRF.findall(page.text)[0],
            },
            follow_redirects=False,
        )
        assert signed.status_code == 303, (role, signed.status_code)
        home = browser.get("/", follow_redirects=True)
        found = _CSRF.search(home.text)
        assert found is not None, role
        made[role.value] = Caller(browser, csrf=found.group(1))
    yield made
    for caller in made.values():
        caller.client.close()


def call(caller: Caller, method: str, path: str, ids: Ids) -> Any:
    safe = method == "GET"
    # Real ids for reading; made-up ones (nothing found) for anything that could change data.
    filled = _PARAM.sub(lambda m: ids.real[m.group(1)] if safe else "0", path)
    kwargs: dict[str, Any] = {"follow_redirects": False}
    if not safe:
        if is_page(path):
            kwargs["data"] = {"csrf_token": caller.csrf}
        else:
            kwargs["json"] = {}
            if caller.csrf:
                kwargs["headers"] = {"X-CSRF-Token": caller.csrf}
    return caller.client.request(method, filled, **kwargs)


def walk_order(route: tuple[str, str]) -> tuple[bool, str, str]:
    return (route == ("POST", "/logout"), route[1], route[0])  # signing out comes last


def test_every_route_has_a_rule(client: TestClient) -> None:
    served = {f"{m} {p}" for m, p in app_routes(client.app)}
    assert len(served) > 100
    assert served - MATRIX.keys() == set(), "routes without a rule in MATRIX"
    assert MATRIX.keys() - served == set(), "rules for routes the app does not serve"


@pytest.mark.parametrize("who", ["nobody", *[r.value for r in ROLES]])
def test_every_route_answers_each_role_as_the_matrix_says(
    client: TestClient, callers: dict[str, Caller], ids: Ids, who: str
) -> None:
    caller = callers[who]
    wrong: list[str] = []
    for method, path in sorted(app_routes(client.app), key=walk_order):
        rule = MATRIX[f"{method} {path}"]
        answer = call(caller, method, path, ids)
        status = answer.status_code
        where = f"{method} {path} -> {status}"
        if status >= 500:
            wrong.append(f"{where} (server error)")
        elif rule == OPEN:
            continue
        elif who == "nobody":
            if is_page(path):
                if status != 303 or "/login" not in answer.headers.get("location", ""):
                    wrong.append(f"{where} (expected the sign-in page)")
            elif status != 401 or answer.headers.get("www-authenticate") != "Bearer":
                wrong.append(f"{where} (expected 401 Bearer)")
        elif admits(rule, Role(who), path):
            if status in (401, 403) and not _refused_inside(who, method, path, answer):
                wrong.append(f"{where} (expected to be let in)")
        elif status != 403:
            wrong.append(f"{where} (expected 403)")
        if who == Role.INSTRUMENT.value and method == "GET" and status == 200:
            for text in ids.patient_texts:
                if text in answer.text:
                    wrong.append(f"{where} shows the patient ({text!r}) to an analyser")
    assert not wrong, f"{who}:\n" + "\n".join(wrong)


def _refused_inside(who: str, method: str, path: str, answer: Any) -> bool:
    """Let in by the route, refused by the service for a reason of its own: a token cannot
    make tokens (only a session opened with a password can), so a machine account gets 403."""
    machine = who in {r.value for r in MACHINE_ROLES}
    return (
        machine
        and (method, path) == ("POST", "/api/v1/me/tokens")
        and (answer.json().get("code") == "token_by_token")
    )
