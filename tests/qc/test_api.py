"""The QC API and pages: the contract's status call, manual runs, override, queue, report."""

from __future__ import annotations

import base64
import re
from typing import Any

from fastapi.testclient import TestClient

from lab.timeutil import OSLO, utcnow

STATUS = "/api/v1/qc/status?instrument=demo"


def lots(client: TestClient, headers: dict[str, str]) -> dict[str, int]:
    found = client.get("/api/v1/qc/lots", headers=headers)
    assert found.status_code == 200, found.text
    materials = {
        m["id"]: m["name"] for m in client.get("/api/v1/qc/materials", headers=headers).json()
    }
    return {materials[lot["material_id"]]: lot["id"] for lot in found.json()}


def manual_run(
    client: TestClient,
    headers: dict[str, str],
    values: dict[str, str],
    minute: int,
    ids: dict[str, int] | None = None,
) -> Any:
    ids = ids or lots(client, headers)
    body = {
        "instrument": "demo",
        "test": "NA",
        "run_at": f"2026-11-30T08:{minute:02d}:00+01:00",
        "values": [{"lot_id": ids[name], "value": value} for name, value in values.items()],
    }
    return client.post("/api/v1/qc/runs", json=body, headers=headers)


def na_status(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    answer = client.get(STATUS, headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["instrument"] == "demo"
    (na,) = [t for t in body["tests"] if t["test"] == "NA"]
    return dict(na)


def test_status_follows_the_contract(
    client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    na = na_status(client, as_role["technician"])
    assert na["state"] == "in_control" and na["rule"] is None
    levels = {lv["level"]: lv for lv in na["levels"]}
    assert levels[1]["material"] == "QC1-DEMO" and levels[2]["material"] == "QC2-DEMO"
    assert (levels[1]["mean"], levels[1]["sd"]) == (140.0, 1.2)
    assert (levels[2]["mean"], levels[2]["sd"]) == (120.0, 1.1)
    tests = {t["test"] for t in client.get(STATUS, headers=as_role["technician"]).json()["tests"]}
    assert tests == {"NA", "K", "KREA", "GLUK", "CRP", "HB"}


def test_status_needs_a_signed_in_user_who_may_see_analysers(
    client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    assert client.get(STATUS).status_code == 401
    assert client.get(STATUS, headers=as_role["interface"]).status_code == 403
    assert client.get("/api/v1/qc/status", headers=as_role["technician"]).status_code == 422


def test_a_manual_1_3s_locks_and_only_a_physician_may_override_with_a_reason(
    client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    bio, lege = as_role["technician"], as_role["physician"]
    ran = manual_run(client, bio, {"QC1-DEMO": "144.2", "QC2-DEMO": "120.1"}, minute=0)
    assert ran.status_code == 201, ran.text
    assert ran.json()["status"] == "rejected" and ran.json()["first_rule"] == "1-3s"
    na = na_status(client, bio)
    assert na["state"] == "locked" and na["rule"] == "1-3s"
    override = {"instrument": "demo", "test": "NA", "reason": "control vial left at room temp"}
    assert client.post("/api/v1/qc/locks/override", json=override, headers=bio).status_code == 403
    short = {**override, "reason": "ok"}
    refused = client.post("/api/v1/qc/locks/override", json=short, headers=lege)
    assert refused.status_code == 422
    assert refused.json()["problems"][0]["field"] == "reason"
    done = client.post("/api/v1/qc/locks/override", json=override, headers=lege)
    assert done.status_code == 200 and done.json()["state"] == "in_control"
    assert na_status(client, bio)["state"] == "in_control"


def test_an_in_control_run_of_both_levels_unlocks(
    client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    bio = as_role["technician"]
    manual_run(client, bio, {"QC1-DEMO": "140.3", "QC2-DEMO": "116.6"}, minute=0)  # -3.1 SD
    assert na_status(client, bio)["state"] == "locked"
    again = manual_run(client, bio, {"QC1-DEMO": "140.3", "QC2-DEMO": "120.2"}, minute=30)
    assert again.json()["status"] == "accepted" and again.json()["all_levels"]
    assert na_status(client, bio)["state"] == "in_control"
    runs = client.get("/api/v1/qc/runs?instrument=demo&test=NA", headers=bio).json()
    assert [r["status"] for r in runs] == ["accepted", "rejected"]
    (rejection,) = [v for v in runs[1]["violations"] if v["severity"] == "reject"]
    assert rejection["rule"] == "1-3s" and rejection["points"][0]["level"] == 2


def test_manual_entry_refuses_bad_input_with_the_field(
    client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    bio = as_role["technician"]
    answer = manual_run(client, bio, {"QC1-DEMO": "one forty"}, minute=0)
    assert answer.status_code == 422
    assert answer.json()["problems"][0]["field"] == "values.0.value"
    ids = lots(client, bio)
    assert manual_run(client, as_role["instrument"], {"QC1-DEMO": "140"}, 0, ids).status_code == 403


def test_set_up_through_the_api_needs_the_right_role(
    client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    material = {"name": "Lyphochek L1", "level": 1, "manufacturer": "demo"}
    assert (
        client.post(
            "/api/v1/qc/materials", json=material, headers=as_role["technician"]
        ).status_code
        == 403
    )
    made = client.post("/api/v1/qc/materials", json=material, headers=as_role["admin"])
    assert made.status_code == 201
    lot = {"material_id": made.json()["id"], "lot_number": "26041", "expires_on": "2027-06-30"}
    lot_made = client.post("/api/v1/qc/lots", json=lot, headers=as_role["admin"])
    assert lot_made.status_code == 201
    target = {
        "lot_id": lot_made.json()["id"],
        "test": "K",
        "unit": "mmol/L",
        "mean": "4.1",
        "sd": "0",
    }
    refused = client.put("/api/v1/qc/targets", json=target, headers=as_role["admin"])
    assert refused.status_code == 422 and refused.json()["problems"][0]["field"] == "sd"
    establishing = {"lot_id": lot_made.json()["id"], "test": "K", "unit": "mmol/L"}
    saved = client.put("/api/v1/qc/targets", json=establishing, headers=as_role["admin"])
    assert saved.status_code == 200 and saved.json()["source"] == "establishing"
    policy = {"test": "NA", "rules": ["1-3s", "2of3-2s"]}
    assert (
        client.put("/api/v1/qc/policies", json=policy, headers=as_role["admin"]).status_code == 422
    )


def test_the_monthly_report_is_a_pdf(
    client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    bio = as_role["technician"]
    manual_run(client, bio, {"QC1-DEMO": "140.3", "QC2-DEMO": "116.6"}, minute=0)
    manual_run(client, bio, {"QC1-DEMO": "140.5", "QC2-DEMO": "120.4"}, minute=20)
    answer = client.get("/api/v1/qc/report?month=2026-11", headers=bio)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/pdf"
    assert answer.content.startswith(b"%PDF")
    from io import BytesIO

    from pypdf import PdfReader

    text = "".join(page.extract_text() for page in PdfReader(BytesIO(answer.content)).pages)
    assert "NA on demo, level 2" in text and "1-3s" in text
    assert client.get("/api/v1/qc/report?month=2026-13", headers=bio).status_code == 422


def test_pages_show_the_lock_the_chart_and_the_queue(
    client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    bio = as_role["technician"]
    manual_run(client, bio, {"QC1-DEMO": "144.2", "QC2-DEMO": "120.1"}, minute=0)
    page = client.get("/qc?instrument=demo&lang=en", headers=bio)
    assert page.status_code == 200
    assert "Locked" in page.text and "1-3s" in page.text
    chart = client.get("/qc/chart?instrument=demo&test=NA&lang=en", headers=bio)
    assert chart.status_code == 200
    images = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', chart.text)
    assert len(images) == 2  # one chart per level, each an SVG image
    assert any("1-3s" in base64.b64decode(image).decode() for image in images)
    assert client.get("/qc/queue", headers=bio).status_code == 200
    for path in ("/?lang=en", "/worklist?lang=en"):
        shown = client.get(path, headers=bio)
        assert shown.status_code == 200 and "Locked by quality control" in shown.text
        assert "<strong>NA</strong> on demo: 1-3s" in shown.text
    assert client.get("/qc/setup", headers=bio).status_code == 403
    assert client.get("/qc/setup", headers=as_role["admin"]).status_code == 200


def test_patient_based_qc_settings_through_the_api(
    client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    setting = {
        "test": "NA",
        "instrument": "demo",
        "statistic": "median",
        "block_size": 20,
        "truncation_low": "130",
        "truncation_high": "150",
        "target": "140",
        "control_low": "138.5",
        "control_high": "141.5",
    }
    put = "/api/v1/qc/moving-settings"
    assert client.put(put, json=setting, headers=as_role["technician"]).status_code == 403
    bad = client.put(put, json={**setting, "control_low": "142"}, headers=as_role["admin"])
    assert bad.status_code == 422
    assert client.put(put, json=setting, headers=as_role["admin"]).status_code == 204
    na = na_status(client, as_role["technician"])
    assert na["moving"]["statistic"] == "median" and na["moving"]["state"] == "no_data"


def test_a_corrective_action_is_written_against_a_run_shown_and_reported(
    client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    bio = as_role["technician"]
    rejected = manual_run(client, bio, {"QC1-DEMO": "144.2", "QC2-DEMO": "120.1"}, minute=0)
    run_id = rejected.json()["id"]
    path = f"/api/v1/qc/runs/{run_id}/actions"
    too_short = client.post(path, json={"text": "fixed"}, headers=bio)
    assert too_short.status_code == 422
    text = "new vial of QC1 opened; reagent pack changed; controls rerun"
    done = client.post(path, json={"text": text}, headers=bio)
    assert done.status_code == 201, done.text
    assert done.json()["run_id"] == run_id and done.json()["text"] == text
    assert (
        client.post("/api/v1/qc/runs/999999/actions", json={"text": text}, headers=bio).status_code
        == 404
    )
    assert client.post(path, json={"text": text}, headers=as_role["admin"]).status_code == 403
    chart = client.get("/qc/chart?instrument=demo&test=NA&lang=en", headers=bio).text
    assert "Corrective actions" in chart and text in chart
    from io import BytesIO

    from pypdf import PdfReader

    month = utcnow().astimezone(OSLO).strftime("%Y-%m")  # the month the action was written
    pdf = client.get(f"/api/v1/qc/report?month={month}&instrument=demo", headers=bio)
    words = "".join(p.extract_text() for p in PdfReader(BytesIO(pdf.content)).pages)
    assert pdf.status_code == 200 and "corrective action" in words
    assert "new vial of" in words and "reagent pack changed" in words  # wrapped in the cell


def test_a_corrective_action_from_the_chart_page(
    client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    from tests.web.support import sign_in

    rejected = manual_run(
        client, as_role["technician"], {"QC1-DEMO": "144.2", "QC2-DEMO": "120.1"}, minute=0
    )
    run_id = rejected.json()["id"]
    token = sign_in(client)  # a technician, in bokmål
    page = client.get("/qc/chart?instrument=demo&test=NA").text
    assert f'action="/qc/runs/{run_id}/action"' in page and "Korrigerende tiltak" in page
    refused = client.post(f"/qc/runs/{run_id}/action", data={"csrf_token": token, "text": "ok"})
    assert refused.status_code == 422
    assert "Skriv hva som ble gjort (minst 10 tegn)." in refused.text  # beside the form
    done = client.post(
        f"/qc/runs/{run_id}/action",
        data={"csrf_token": token, "text": "kalibrert på nytt, kontroller i orden"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert "kalibrert på nytt, kontroller i orden" in client.get(done.headers["location"]).text
