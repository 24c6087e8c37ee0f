"""The API of several measurements: listed with their origin, one chosen, the released kept."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.test_flow import place_order


def test_choose_a_measurement_over_the_api(
    client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    bio, lege = as_role["technician"], as_role["physician"]
    order = place_order(client, as_role["interface"])
    accession = next(s for s in order["specimens"] if s["container"] == "SERUM")["accession_number"]
    assert client.post(f"/api/v1/specimens/{accession}/receive", headers=bio).status_code == 200
    for value in ("5.9", "4.3"):
        entered = client.post(
            "/api/v1/results",
            json={"accession_number": accession, "test_code": "K", "value": value},
            headers=bio,
        )
        assert entered.status_code == 201, entered.text
    result_id = entered.json()["id"]
    one = client.get(f"/api/v1/results/{result_id}", headers=bio).json()
    assert [(m["number"], m["origin"], m["value"], m["reported"]) for m in one["measurements"]] == [
        (1, "first", "5.9", False),
        (2, "rerun", "4.3", True),
    ]
    first = one["measurements"][0]["id"]
    # A technician may not choose; a reviewer may, and gets the chosen value to verify.
    denied = client.post(
        f"/api/v1/results/{result_id}/choose", json={"measurement_id": first}, headers=bio
    )
    assert denied.status_code == 403
    chosen = client.post(
        f"/api/v1/results/{result_id}/choose", json={"measurement_id": first}, headers=lege
    )
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["value"] == "5.9" and chosen.json()["flags"] == ["H"]
    assert [m["reported"] for m in chosen.json()["measurements"]] == [True, False]
    missing = client.post(
        f"/api/v1/results/{result_id}/choose", json={"measurement_id": 0}, headers=lege
    )
    assert missing.status_code == 404
    nothing = client.post(
        f"/api/v1/results/{result_id}/set-aside", json={"reason": "ok"}, headers=lege
    )
    assert nothing.status_code == 409


def test_values_no_lab_can_measure_are_refused_with_the_field(
    client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    bio = as_role["technician"]
    order = place_order(client, as_role["interface"])
    accession = next(s for s in order["specimens"] if s["container"] == "SERUM")["accession_number"]
    for value, why in (("NaN", "NaN or infinity"), ("1e400", "sane range"), ("-5", "negative")):
        refused = client.post(
            "/api/v1/results",
            json={"accession_number": accession, "test_code": "NA", "value": value},
            headers=bio,
        )
        assert refused.status_code == 422, refused.text
        problem = refused.json()["problems"][0]
        assert problem["field"] == "value" and why in problem["message"]


def test_fix_a_result_before_release_over_the_api(
    client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    bio, lege = as_role["technician"], as_role["physician"]
    order = place_order(client, as_role["interface"])
    accession = next(s for s in order["specimens"] if s["container"] == "SERUM")["accession_number"]
    assert client.post(f"/api/v1/specimens/{accession}/receive", headers=bio).status_code == 200
    entered = client.post(
        "/api/v1/results",
        json={"accession_number": accession, "test_code": "K", "value": "9.1"},
        headers=bio,
    )
    result_id = entered.json()["id"]
    analyser = client.post(
        f"/api/v1/results/{result_id}/replace",
        json={"value": "4.1", "reason": "typo"},
        headers=as_role["instrument"],
    )
    assert analyser.status_code == 403
    no_reason = client.post(
        f"/api/v1/results/{result_id}/replace", json={"value": "4.1", "reason": ""}, headers=bio
    )
    assert no_reason.status_code == 422
    replaced = client.post(
        f"/api/v1/results/{result_id}/replace",
        json={"value": "4.1", "reason": "typed 9.1 for 4.1"},
        headers=bio,
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["value"] == "4.1" and replaced.json()["status"] == "awaiting_review"
    assert [m["value"] for m in replaced.json()["measurements"]] == ["9.1", "4.1"]
    rerun = client.post(f"/api/v1/results/{result_id}/rerun", json={"reason": "check"}, headers=bio)
    assert rerun.status_code == 200 and rerun.json()["status"] == "preliminary"
    # Discarding needs the right to verify.
    denied = client.post(f"/api/v1/results/{result_id}/discard", json={"reason": "x"}, headers=bio)
    assert denied.status_code == 403
    gone = client.post(
        f"/api/v1/results/{result_id}/discard", json={"reason": "clotted"}, headers=lege
    )
    assert gone.status_code == 200 and gone.json()["status"] == "cancelled"
    again = client.post(
        f"/api/v1/results/{result_id}/discard", json={"reason": "clotted"}, headers=lege
    )
    assert again.status_code == 409 and again.json()["code"] == "result_cancelled"
