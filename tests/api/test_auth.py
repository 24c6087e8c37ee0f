"""Every API route refuses callers without credentials (401); roles: tests/test_route_matrix.py."""

from __future__ import annotations

import re

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


# Which role may call what is one matrix for every route, pages included:
# tests/test_route_matrix.py.


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
