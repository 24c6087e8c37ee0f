"""Results that find no home go to the unmatched queue (never dropped) and can be resolved or
discarded through the API; QC results go to their own table; the analyser status is listed."""

from __future__ import annotations

import asyncio
import random
import secrets
from datetime import datetime
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from instruments.profiles import get_profile
from instruments.simulator import SpecimenRun, VirtualAnalyser
from instruments.transports import tcp
from lab.config import Settings
from lab.main import create_app
from lab.specimens import accession
from lab.tables import QcResult, UnmatchedResult
from testkit.database import ScratchDatabase
from tests.conftest import auth

from .conftest import new_specimens, running, tcp_instrument

FIXED_CLOCK = datetime(2026, 11, 27, 9, 30, 0)


def play(
    factory: sessionmaker[Session],
    name: str,
    accession: str,
    codes: list[str],
    *,
    control: bool = False,
    **config: object,
) -> list[SpecimenRun]:
    async def scenario() -> list[SpecimenRun]:
        async with running(tcp_instrument(name, **config), factory) as runner:
            assert runner.listening_port is not None
            # A fixed clock: a replay must be the same transmission to the second.
            analyser = VirtualAnalyser(
                profile=get_profile("generic"), rng=random.Random(5), clock=lambda: FIXED_CLOCK
            )
            channel = await tcp.open_channel("127.0.0.1", runner.listening_port)
            return await analyser.run(
                channel, [accession], query=False, tests=codes, control=control
            )

    return asyncio.run(scenario())


def unmatched_rows(factory: sessionmaker[Session], instrument: str) -> list[UnmatchedResult]:
    with factory() as session:
        return list(
            session.scalars(
                select(UnmatchedResult)
                .where(UnmatchedResult.instrument == instrument)
                .order_by(UnmatchedResult.id)
            )
        )


def test_unknown_specimen_and_unmapped_test_are_kept_and_resolved(
    committing_factory: sessionmaker[Session], committed_database: ScratchDatabase, tmp_path: Path
) -> None:
    name = f"unm-{secrets.token_hex(3)}"
    unknown = accession.make(99, 9_999_999)  # well-formed, but no specimen has it
    runs = play(committing_factory, name, unknown, ["HB", "LPK"])
    assert runs[0].outcome == "accepted"  # taken: it waits in the queue, not on the line
    tubes = new_specimens(committing_factory, ["HB"])
    runs += play(
        committing_factory, name, tubes["HB"], ["HB", "ZZZ"], tests={"HB": "HB"}, local_codes=False
    )
    # ZZZ is not mapped (local_codes off, only HB mapped); HB was recorded
    rows = unmatched_rows(committing_factory, name)
    assert len(rows) == 3, [(r.specimen_id, r.instrument_test_code, r.reason) for r in rows]
    assert {r.specimen_id for r in rows} == {unknown, tubes["HB"]}
    assert "no specimen" in rows[0].reason
    assert "not mapped" in rows[2].reason and rows[2].instrument_test_code == "ZZZ"
    # The same reasons as codes with parameters, for the pages to say in their language.
    assert (rows[0].reason_code, rows[0].reason_params) == (
        "specimen_unknown",
        {"number": unknown},
    )
    assert (rows[2].reason_code, rows[2].reason_params) == (
        "not_mapped",
        {"code": "ZZZ", "analyser": name},
    )
    # the same transmission again adds nothing
    play(committing_factory, name, unknown, ["HB", "LPK"])
    assert len(unmatched_rows(committing_factory, name)) == 3

    app = create_app(
        Settings(database_url=committed_database.url, data_dir=tmp_path),
        session_factory=committing_factory,
    )
    technician = auth(committed_database.tokens["technician"])
    with TestClient(app) as client:
        listed = client.get(f"/api/v1/instruments/unmatched?instrument={name}", headers=technician)
        assert listed.status_code == 200
        assert [r["id"] for r in listed.json()] == [r.id for r in rows]
        assert listed.json()[2]["reason_code"] == "not_mapped"
        assert (
            client.get(
                "/api/v1/instruments/unmatched",
                headers=auth(committed_database.tokens["instrument"]),
            ).status_code
            == 403
        )
        target = new_specimens(committing_factory, ["HB", "LPK"])["HB"]
        resolved = client.post(
            f"/api/v1/instruments/unmatched/{rows[0].id}/resolve",
            json={"accession_number": target, "test_code": "HB", "note": "label swapped"},
            headers=technician,
        )
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["unmatched"]["status"] == "resolved"
        result = client.get(f"/api/v1/results?accession={target}", headers=technician).json()
        assert [(r["test_code"], r["status"]) for r in result] == [("HB", "awaiting_review")]
        again = client.post(
            f"/api/v1/instruments/unmatched/{rows[0].id}/resolve",
            json={"accession_number": target, "test_code": "HB"},
            headers=technician,
        )
        assert again.status_code == 409
        no_reason = client.post(
            f"/api/v1/instruments/unmatched/{rows[1].id}/discard",
            json={"reason": ""},
            headers=technician,
        )
        assert no_reason.status_code == 422
        discarded = client.post(
            f"/api/v1/instruments/unmatched/{rows[1].id}/discard",
            json={"reason": "test run of the analyser"},
            headers=technician,
        )
        assert discarded.status_code == 200 and discarded.json()["status"] == "discarded"
        still_open = client.get(
            f"/api/v1/instruments/unmatched?instrument={name}", headers=technician
        ).json()
        assert [r["id"] for r in still_open] == [rows[2].id]


def test_control_material_goes_to_the_qc_table(
    committing_factory: sessionmaker[Session], committed_database: ScratchDatabase, tmp_path: Path
) -> None:
    name = f"qc-{secrets.token_hex(3)}"
    play(committing_factory, name, "QC-LOT42", ["HB", "LPK"])  # by prefix
    play(committing_factory, name, "CTRL-7", ["NA"], control=True)  # H-12 Q and O-12 Q
    with committing_factory() as session:
        rows = list(session.scalars(select(QcResult).where(QcResult.instrument == name)))
    assert sorted((r.control_id, r.test_code) for r in rows) == [
        ("CTRL-7", "NA"),
        ("QC-LOT42", "HB"),
        ("QC-LOT42", "LPK"),
    ]
    assert unmatched_rows(committing_factory, name) == []
    app = create_app(
        Settings(database_url=committed_database.url, data_dir=tmp_path),
        session_factory=committing_factory,
    )
    with TestClient(app) as client:
        listed = client.get(
            f"/api/v1/instruments/qc?instrument={name}",
            headers=auth(committed_database.tokens["reviewer"]),
        )
        assert listed.status_code == 200 and len(listed.json()) == 3


def test_instrument_list_without_the_runtime(
    client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    listed = client.get("/api/v1/instruments", headers=as_role["technician"])
    assert listed.status_code == 200
    (demo,) = listed.json()
    assert demo["name"] == "demo" and demo["profile"] == "generic"
    assert demo["status"] == {"state": "not running"}
    assert "127.0.0.1:5001" in demo["transport"]
    assert client.get("/api/v1/instruments", headers=as_role["instrument"]).status_code == 403
    assert client.get("/api/v1/instruments").status_code == 401
