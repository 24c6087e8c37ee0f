"""The API flow a new user tries: order -> specimen -> receive -> result -> flags -> verify ->
audit, with bad input at every step answered by a clear 4xx."""

from __future__ import annotations

from fastapi.testclient import TestClient

from testkit.patients import KARI_FNR

ORDER = {
    "placer_order_number": "HP-1001",
    "placer_namespace": "HP",
    "patient": {
        "identifiers": [{"value": KARI_FNR, "authority": "FNR"}],
        "family_name": "Østbø",
        "given_name": "Kari Åse",
    },
    "tests": [{"code": "HB"}, {"code": "NA"}, {"code": "2823-3", "system": "LN"}],
    "priority": "stat",
    "ordering_clinician": "Lege Lise",
    "ordering_location": "MED3",
}


def place_order(client: TestClient, headers: dict[str, str]) -> dict:
    response = client.post("/api/v1/orders", json=ORDER, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_the_whole_flow(client: TestClient, as_role: dict[str, dict[str, str]]) -> None:
    bio, lege = as_role["technician"], as_role["physician"]
    order = place_order(client, as_role["interface"])
    assert [t["code"] for t in order["tests"]] == ["HB", "NA", "K"]
    # HB goes in an EDTA tube, NA and K share the serum tube.
    containers = sorted(s["container"] for s in order["specimens"])
    assert containers == ["EDTA", "SERUM"]
    serum = next(s for s in order["specimens"] if s["container"] == "SERUM")
    accession = serum["accession_number"]

    found = client.get(
        "/api/v1/orders", params={"placer_order_number": "HP-1001"}, headers=bio
    ).json()
    assert [o["filler_order_number"] for o in found] == [order["filler_order_number"]]

    received = client.post(f"/api/v1/specimens/{accession}/receive", headers=bio)
    assert received.status_code == 200, received.text
    assert received.json()["status"] == "received"
    again = client.post(f"/api/v1/specimens/{accession}/receive", headers=bio)
    assert again.status_code == 409
    assert "received already" in again.json()["message"]

    # Sodium 128 mmol/L is below the reference interval: flag L.
    na = client.post(
        "/api/v1/results",
        json={"accession_number": accession, "test_code": "NA", "value": "128"},
        headers=bio,
    )
    assert na.status_code == 201, na.text
    assert na.json()["flags"] == ["L"]
    assert na.json()["status"] == "awaiting_review"
    # Potassium 7,1 (decimal comma) is above the critical limit: HH.
    k = client.post(
        "/api/v1/results",
        json={"accession_number": accession, "test_code": "K", "value": "7,1"},
        headers=bio,
    )
    assert k.status_code == 201, k.text
    assert k.json()["flags"] == ["HH"]

    specimen = client.get(f"/api/v1/specimens/{accession}", headers=bio).json()
    assert specimen["status"] == "completed"
    assert [e["event"] for e in specimen["timeline"]][:2] == ["created", "received"]

    listed = client.get("/api/v1/results", params={"accession": accession}, headers=bio).json()
    assert {r["test_code"]: r["flags"] for r in listed} == {"NA": ["L"], "K": ["HH"]}

    # A technician may not verify; the lab physician may.
    na_id, k_id = na.json()["id"], k.json()["id"]
    assert client.post(f"/api/v1/results/{na_id}/verify", headers=bio).status_code == 403
    verified = client.post(f"/api/v1/results/{na_id}/verify", headers=lege)
    assert verified.status_code == 200, verified.text
    assert verified.json()["status"] == "verified"
    assert client.post(f"/api/v1/results/{na_id}/verify", headers=lege).status_code == 409

    # The critical potassium needs the documented call.
    refused = client.post(f"/api/v1/results/{k_id}/verify", headers=lege)
    assert refused.status_code == 422
    assert refused.json()["problems"][0]["field"] == "critical"
    called = client.post(
        f"/api/v1/results/{k_id}/verify",
        json={
            "critical": {
                "notified_person": "Lege Lise, MED3",
                "notified_at": "2026-11-27T09:15:00+01:00",
                "read_back": True,
            }
        },
        headers=lege,
    )
    assert called.status_code == 200, called.text

    # Correction needs a reason and makes a new version.
    no_reason = client.post(
        f"/api/v1/results/{na_id}/correct", json={"value": "138", "reason": ""}, headers=lege
    )
    assert no_reason.status_code == 422
    corrected = client.post(
        f"/api/v1/results/{na_id}/correct",
        json={"value": "138", "reason": "wrong specimen dilution"},
        headers=lege,
    )
    assert corrected.status_code == 200, corrected.text
    body = corrected.json()
    assert body["status"] == "corrected" and body["version"] == 3 and body["flags"] == []
    assert [v["status"] for v in body["versions"]] == ["awaiting_review", "verified", "corrected"]

    # Who has seen or changed Kari's data.
    patient_id = order["patient_id"]
    trail = client.get(f"/api/v1/patients/{patient_id}/audit", headers=lege).json()
    actions = {e["action"] for e in trail}
    assert {"order.place", "specimen.received", "result.record", "result.verify"} <= actions
    assert {"read.specimen", "read.result.list"} <= actions
    readers = {e["actor_name"] for e in trail if e["action"].startswith("read.")}
    assert "t-technician" in readers


def test_bad_input_at_every_step(client: TestClient, as_role: dict[str, dict[str, str]]) -> None:
    bio = as_role["technician"]
    iface = as_role["interface"]
    bad_fnr = dict(
        ORDER,
        patient=dict(ORDER["patient"], identifiers=[{"value": "15038426247", "authority": "FNR"}]),
    )
    response = client.post("/api/v1/orders", json=bad_fnr, headers=iface)
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "identifiers[0]"
    assert "check digits" in response.json()["problems"][0]["message"]

    unknown_test = dict(ORDER, tests=[{"code": "NOPE"}])
    response = client.post("/api/v1/orders", json=unknown_test, headers=iface)
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "tests[0].code"

    missing = {k: v for k, v in ORDER.items() if k != "placer_order_number"}
    response = client.post("/api/v1/orders", json=missing, headers=iface)
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "placer_order_number"

    order = place_order(client, iface)
    assert client.post("/api/v1/orders", json=ORDER, headers=iface).status_code == 409

    accession = order["specimens"][0]["accession_number"]
    typo = accession[:-2] + accession[-1] + accession[-2]
    if typo != accession:
        response = client.post(f"/api/v1/specimens/{typo}/receive", headers=bio)
        assert response.status_code == 422
        assert "check digit" in response.json()["message"]
    assert client.post("/api/v1/specimens/2600000000/receive", headers=bio).status_code in (
        404,
        422,
    )

    response = client.post(
        f"/api/v1/specimens/{accession}/reject", json={"reason": "XX"}, headers=bio
    )
    assert response.status_code == 422 and response.json()["problems"][0]["field"] == "reason"

    edta = next(s for s in order["specimens"] if s["container"] == "EDTA")["accession_number"]
    response = client.post(
        "/api/v1/results",
        json={"accession_number": edta, "test_code": "HB", "value": "lots"},
        headers=bio,
    )
    assert response.status_code == 422 and response.json()["problems"][0]["field"] == "value"
    response = client.post(
        "/api/v1/results",
        json={"accession_number": edta, "test_code": "HB", "value": "13.1", "unit": "mmol/L"},
        headers=bio,
    )
    # Mass per volume cannot be had from amount per volume: refused, naming the field.
    assert response.status_code == 422 and response.json()["problems"][0]["field"] == "unit"
    response = client.post(
        "/api/v1/results",
        json={"accession_number": edta, "test_code": "CRP", "value": "3"},
        headers=bio,
    )
    assert response.status_code == 404 and "not ordered" in response.json()["message"]

    rejected = client.post(
        f"/api/v1/specimens/{edta}/reject",
        json={"reason": "RC", "comment": "clot seen"},
        headers=bio,
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    response = client.post(
        "/api/v1/results",
        json={"accession_number": edta, "test_code": "HB", "value": "13.1"},
        headers=bio,
    )
    assert response.status_code == 409 and "rejected" in response.json()["message"]

    response = client.post("/api/v1/results", json={"accession_number": edta}, headers=bio)
    assert response.status_code == 422
    fields = {p["field"] for p in response.json()["problems"]}
    assert {"test_code", "value"} <= fields


def test_add_on_and_cancel(client: TestClient, as_role: dict[str, dict[str, str]]) -> None:
    bio = as_role["technician"]
    order = place_order(client, as_role["interface"])
    filler = order["filler_order_number"]
    serum = next(s for s in order["specimens"] if s["container"] == "SERUM")["accession_number"]
    client.post(f"/api/v1/specimens/{serum}/receive", headers=bio)
    # CRP is a serum test: the add-on goes on the tube already in the lab.
    added = client.post(f"/api/v1/orders/{filler}/tests", json={"code": "CRP"}, headers=bio)
    assert added.status_code == 201, added.text
    crp = next(t for t in added.json()["tests"] if t["code"] == "CRP")
    assert crp["add_on"] and crp["specimen"] == serum
    assert (
        client.post(f"/api/v1/orders/{filler}/tests", json={"code": "CRP"}, headers=bio).status_code
        == 409
    )

    client.post(
        "/api/v1/results",
        json={"accession_number": serum, "test_code": "NA", "value": "140"},
        headers=bio,
    )
    refused = client.post(
        f"/api/v1/orders/{filler}/cancel",
        json={"codes": ["NA"], "reason": "not needed"},
        headers=bio,
    )
    assert refused.status_code == 409
    cancelled = client.post(
        f"/api/v1/orders/{filler}/cancel",
        json={"codes": ["CRP"], "reason": "not needed"},
        headers=bio,
    )
    assert cancelled.status_code == 200
    assert next(t for t in cancelled.json()["tests"] if t["code"] == "CRP")["status"] == "cancelled"
