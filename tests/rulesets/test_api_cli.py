"""The admin API and the `lab rules` command: role-checked, audited, refusals with lines."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from lab.rules.demo import demo_texts
from lab.rulesets.service import ActiveRules as RuleBundle
from testkit.database import ScratchDatabase
from tests.test_cli import lab


def test_api_lists_loads_and_refuses_by_role(
    client: TestClient, as_role: dict[str, dict[str, str]], demo_rules: RuleBundle
) -> None:
    assert client.get("/api/v1/rules").status_code == 401
    assert client.get("/api/v1/rules", headers=as_role["technician"]).status_code == 403
    listed = client.get("/api/v1/rules?kind=reflex", headers=as_role["admin"])
    assert listed.status_code == 200
    assert [(v["version"], v["state"]) for v in listed.json()] == [(1, "active")]

    bad = client.post(
        "/api/v1/rules/autoverification",
        json={"text": 'kind = "autoverification"\n[test.XYZ]\nautoverify = true\n'},
        headers=as_role["admin"],
    )
    assert bad.status_code == 422
    problem = {"field": "line 2", "message": "test.XYZ: unknown test 'XYZ' (not in the catalog)"}
    assert problem in bad.json()["problems"]

    made = client.post(
        "/api/v1/rules/reflex",
        json={"text": demo_texts()["reflex"], "description": "same as v1"},
        headers=as_role["admin"],
    )
    assert made.status_code == 201 and made.json()["version"] == 2
    assert made.json()["state"] == "draft" and made.json()["created_by"] == "t-admin"

    refused = client.post(
        "/api/v1/rules/reflex/2/state", json={"state": "active"}, headers=as_role["admin"]
    )
    assert refused.status_code == 403
    shadow = client.post(
        "/api/v1/rules/reflex/2/state", json={"state": "shadow"}, headers=as_role["admin"]
    )
    assert shadow.status_code == 200 and shadow.json()["state"] == "shadow"
    active = client.post(
        "/api/v1/rules/reflex/2/state", json={"state": "active"}, headers=as_role["physician"]
    )
    assert active.status_code == 200
    assert active.json()["activated_by"] == "t-physician"
    text = client.get("/api/v1/rules/reflex/1", headers=as_role["physician"])
    assert text.json()["state"] == "retired" and "TSH-FT4" in text.json()["text"]


def test_cli_list_refuse_and_replay_twice(test_database: ScratchDatabase, tmp_path: Path) -> None:
    url = test_database.url
    listed = lab("rules", "list", database_url=url)
    assert listed.returncode == 0, listed.stderr
    assert "autoverification v1" in " ".join(listed.stdout.split())
    bad = tmp_path / "bad.toml"
    bad.write_text("[test.NA]\nautoverify = maybe\n", encoding="utf-8")
    refused = lab(
        "rules", "load", "autoverification", str(bad), "--user", "t-admin", database_url=url
    )
    assert refused.returncode == 2 and "line 2" in refused.stderr
    technician = lab("rules", "replay", "1", "--user", "t-technician", database_url=url)
    assert technician.returncode == 2 and "may not" in technician.stderr
    first = lab("rules", "replay", "1", "--user", "t-physician", database_url=url)
    second = lab("rules", "replay", "1", "--user", "t-physician", database_url=url)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert "would be released without a person" in first.stdout
