"""Every route refuses callers without credentials (401) and with the wrong role (403)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

OPEN_ROUTES = {"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def concrete(path: str) -> str:
    """Fill path parameters with harmless values."""
    return re.sub(r"\{[^}]+\}", "1", path)


def api_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every operation the app publishes, read from its own OpenAPI description."""
    paths = client.get("/openapi.json").json()["paths"]
    routes = [
        (method.upper(), path)
        for path, operations in paths.items()
        if path not in OPEN_ROUTES
        for method in operations
    ]
    assert len(routes) > 20  # the walk covers the whole API, not a handful
    return routes


def test_every_route_needs_credentials(client: TestClient) -> None:
    for method, path in api_routes(client):
        response = client.request(method, concrete(path))
        assert response.status_code == 401, f"{method} {path} answered {response.status_code}"
        assert response.headers.get("www-authenticate") == "Bearer"


def test_unknown_or_malformed_token(client: TestClient) -> None:
    for header in ("Bearer nope", "Basic dXNlcjpwYXNz", "Bearer "):
        response = client.get("/api/v1/me", headers={"Authorization": header})
        assert response.status_code == 401, header


# Which role may call what; everything else must answer 403 for that role.
ANALYSERS = {
    "GET /api/v1/instruments",
    "GET /api/v1/instruments/qc",
    "GET /api/v1/instruments/{name}/worklist",
    # Internal QC: states, runs, charts' data, the queue, the report; no patient data.
    "GET /api/v1/qc/status",
    "GET /api/v1/qc/runs",
    "GET /api/v1/qc/queue",
    "GET /api/v1/qc/materials",
    "GET /api/v1/qc/lots",
    "GET /api/v1/qc/report",
}
# Setting QC up (materials, lots, control IDs, targets, rules, patient-based QC): admin too.
MANAGE_QC = {
    "POST /api/v1/qc/materials",
    "POST /api/v1/qc/lots",
    "PUT /api/v1/qc/control-ids",
    "PUT /api/v1/qc/targets",
    "PUT /api/v1/qc/policies",
    "PUT /api/v1/qc/moving-settings",
}
# Anyone signed in: who am I, my own tokens (made only from a session: with a token, 403).
SELF = {
    "GET /api/v1/me",
    "GET /api/v1/me/tokens",
    "POST /api/v1/me/tokens",
    "POST /api/v1/tokens/{token_id}/revoke",
    "POST /api/v1/users/{username}/tokens",
}
CATALOG = SELF | {
    "GET /api/v1/catalog/tests",
    "GET /api/v1/catalog/tests/{code}",
    "GET /api/v1/catalog/panels",
}
ALLOWED = {
    "admin": CATALOG
    | ANALYSERS
    | MANAGE_QC
    | {
        "GET /api/v1/users",
        "POST /api/v1/users",
        "GET /api/v1/users/{username}/tokens",
        "POST /api/v1/users/{username}/disable",
        "POST /api/v1/users/{username}/enable",
        "PUT /api/v1/users/{username}/roles",
        "PUT /api/v1/catalog/tests/{code}",
        "GET /api/v1/patients/{patient_id}/audit",
        # Message metadata without content, and resending a dead-lettered message.
        "GET /api/v1/messages",
        "GET /api/v1/messages/{message_id}",
        "POST /api/v1/messages/{message_id}/resend",
        # Times and counts of the lab module's own share of the turnaround, no patient data.
        "GET /api/v1/reports/turnaround",
        # Rule set versions: list, read, load, shadow (activation is refused inside: physician).
        "GET /api/v1/rules",
        "GET /api/v1/rules/{kind}/{version}",
        "POST /api/v1/rules/{kind}",
        "POST /api/v1/rules/{kind}/{version}/state",
        # What a version decided in shadow: result ids, statuses and hold codes, no values.
        "GET /api/v1/rules/autoverification/{version}/shadow",
    },
    # Analysers enter results and handle specimens; they do not read patient data.
    "instrument": CATALOG
    | {"POST /api/v1/results", "GET /api/v1/instruments/{name}/worklist"}
    | {
        f"POST /api/v1/specimens/{{accession_number}}/{action}"
        for action in ("collect", "receive", "reject", "dispose", "aliquots")
    },
}


@pytest.mark.parametrize("role", sorted(ALLOWED))
def test_roles_without_a_grant_get_403(
    client: TestClient, as_role: dict[str, dict[str, str]], role: str
) -> None:
    for method, path in api_routes(client):
        if f"{method} {path}" in ALLOWED[role]:
            continue
        response = client.request(method, concrete(path), headers=as_role[role])
        assert response.status_code == 403, f"{role}: {method} {path} -> {response.status_code}"


def test_admin_sees_no_patient_data(client: TestClient, as_role: dict[str, dict[str, str]]) -> None:
    response = client.get("/api/v1/patients", params={"q": "Østbø"}, headers=as_role["admin"])
    assert response.status_code == 403


def test_validation_errors_name_the_field(
    client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    response = client.post(
        "/api/v1/orders",
        json={"placer_order_number": "", "tests": [], "priority": "whenever"},
        headers=as_role["technician"],
    )
    assert response.status_code == 422
    fields = {p["field"] for p in response.json()["problems"]}
    assert {"placer_order_number", "tests", "priority"} <= fields


def test_openapi_and_health_are_open(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 200
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["database"]["state"] == "up"
