"""The whole flow on real sockets and a real serial pseudo-terminal, against `lab serve`:

HL7 order in -> specimens received (API, as bio) -> host query -> results over ASTM (TCP and
serial) -> review and verify (API, as lege) -> ORU^R01 out -> ACK from the record's receiver,
with each step's time read back from what the lab module stored, and the turnaround report.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from instruments.profiles import get_profile
from instruments.simulator import SpecimenRun, VirtualAnalyser
from instruments.transports import tcp
from testkit.api import ApiClient
from testkit.database import ScratchDatabase, create_database, drop_database
from testkit.mllp import ack_code, send_hl7
from testkit.orders import oml_o21
from testkit.patients import synthetic_patients
from testkit.process import COBAS_TESTS as COBAS
from testkit.process import Analyser, LabProcess, free_port, running_lab
from testkit.record import FakeRecord

pytestmark = pytest.mark.slow
# The demo day's analysers: blood counts over TCP, chemistry over a serial line.
ANALYSERS = [
    Analyser(name="demo"),
    Analyser(name="c311-serial", profile="cobas", line="serial", tests=COBAS),
]


@pytest.fixture
def flow_database(database_server: str) -> Iterator[ScratchDatabase]:
    """A database of this flow's own: the lab process it starts dispatches every waiting ORU of
    its database, so results other tests left unsent must not count in its turnaround report."""
    database = create_database(database_server, "flow", role_users=True)
    yield database
    drop_database(database)


@pytest.fixture
def flow_engine(flow_database: ScratchDatabase) -> Any:
    engine = create_engine(flow_database.runtime_url)
    yield engine
    engine.dispose()


async def _wait_for(check: Any, what: str, seconds: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        found = await asyncio.to_thread(check)
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def test_order_to_record_ack(
    flow_database: ScratchDatabase, flow_engine: Engine, tmp_path: Path
) -> None:
    url = flow_database.url
    engine = flow_engine
    placer = f"WF{secrets.token_hex(4).upper()}"
    patient = synthetic_patients(1, seed=random.randrange(10**6))[0]

    async def scenario() -> dict[str, Any]:
        receiver = FakeRecord()
        async with running_lab(url, tmp_path, analysers=ANALYSERS, record=receiver) as lab:
            assert lab.pty is not None
            bio = ApiClient(lab.base, lab.token("bio"))
            lege = ApiClient(lab.base, lab.token("lege"))

            # 1. the record orders a blood count and electrolytes/creatinine
            order = oml_o21(
                control_id=f"{placer}-1",
                placer=placer,
                patient=patient,
                tests=["BLODSTATUS", "ELKREA"],
            )
            (ack,) = await send_hl7("127.0.0.1", lab.mllp_port, [order])
            assert ack_code(ack) == "AA"

            # 2. the technician receives both tubes
            tubes = await asyncio.to_thread(bio.tubes, placer)
            assert sorted(t["container"] for t in tubes) == ["EDTA", "SERUM"]
            for tube in tubes:
                await asyncio.to_thread(bio.receive, tube["accession_number"])
            edta = next(t["accession_number"] for t in tubes if t["container"] == "EDTA")
            serum = next(t["accession_number"] for t in tubes if t["container"] != "EDTA")

            # 3-4. host query and results: blood counts over TCP, chemistry over the serial line
            blood = VirtualAnalyser(profile=get_profile("generic"), rng=random.Random(1))
            chemistry = VirtualAnalyser(
                profile=get_profile("cobas"), to_local=COBAS.get, rng=random.Random(2)
            )
            channel = await tcp.open_channel("127.0.0.1", lab.astm_port)
            runs: list[list[SpecimenRun]] = await asyncio.gather(
                blood.run(channel, [edta]), chemistry.run(lab.pty.channel(), [serum])
            )
            (blood_run,), (chemistry_run,) = runs
            assert (blood_run.outcome, chemistry_run.outcome) == ("accepted", "accepted")
            assert set(blood_run.ordered) == {"HB", "LPK", "TPK"}
            assert {COBAS[c] for c in chemistry_run.ordered} == {"NA", "K", "KREA"}
            sent = {r.test_code: r.value for r in blood_run.sent} | {
                COBAS[r.test_code]: r.value for r in chemistry_run.sent
            }

            # 5. stored and shown for review, then verified by the lab physician
            stored: dict[str, str] = {}
            for accession in (edta, serum):
                for result in await asyncio.to_thread(
                    lege.call, "GET", f"/api/v1/results?accession={accession}"
                ):
                    assert result["status"] == "awaiting_review"
                    stored[result["test_code"]] = result["value"]
            assert {code: float(v) for code, v in stored.items()} == {
                code: float(v) for code, v in sent.items()
            }
            for accession in (edta, serum):
                await asyncio.to_thread(lege.verify_specimen, accession)

            # 6-7. one ORU^R01 for the order reaches the record and is acknowledged
            def delivered() -> list[Any]:
                return [r for r in receiver.filed.values() if r.placer == placer]

            (oru,) = await _wait_for(delivered, "the ORU at the record")
            assert {code: float(v) for code, v, _, s in oru.observations if s == "F"} == {
                code: float(v) for code, v in sent.items()
            }

            def acknowledged() -> Any:
                with engine.connect() as connection:
                    return connection.execute(
                        text(
                            "SELECT created_at, finished_at FROM hl7_message WHERE direction = "
                            "'out' AND status = 'acknowledged' AND control_id = :c"
                        ),
                        {"c": oru.control_id},
                    ).one_or_none()

            queued_at, acked_at = await _wait_for(acknowledged, "the ORU marked acknowledged")

            # the analysers' spans, copied from the archive by the indexer (every 2 s)
            def analyser_spans() -> list[Any]:
                with engine.connect() as connection:
                    rows = connection.execute(
                        text(
                            "SELECT instrument, specimen_ids, results, last_frame_at, "
                            "acknowledged_at FROM turnaround_analyser_message "
                            "WHERE specimen_ids IN (:a, :b) ORDER BY instrument"
                        ),
                        {"a": edta, "b": serum},
                    ).all()
                return rows if len(rows) == 2 else []

            spans = await _wait_for(analyser_spans, "the analyser timings")
            since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
            report = await asyncio.to_thread(
                lege.call, "GET", f"/api/v1/reports/turnaround?since={since.replace('+', '%2B')}"
            )
            try:
                await asyncio.to_thread(bio.call, "GET", "/api/v1/reports/turnaround")
                technician_status = 200
            except Exception as error:
                technician_status = getattr(error, "code", 0)
            health = await asyncio.to_thread(lab.process.wait_healthy, 5)
            return {
                "steps": _steps(engine, placer, edta, serum),
                "queued_at": queued_at,
                "acked_at": acked_at,
                "spans": spans,
                "report": report,
                "technician_status": technician_status,
                "health": health,
            }

    found = asyncio.run(scenario())
    steps = found["steps"]
    # each step's time is stored, and they follow one another
    assert (
        steps["order_in"]
        <= steps["order_acked"]
        <= steps["received"]
        <= steps["recorded"]
        <= steps["verified"]
        <= found["acked_at"]
    )
    # the ORU is queued in the verification's own transaction (created_at is its start)
    assert found["queued_at"] <= steps["verified"] < found["queued_at"] + timedelta(seconds=2)
    for instrument, _, results, last_frame_at, acknowledged_at in found["spans"]:
        assert results == 3, instrument
        assert timedelta(0) < acknowledged_at - last_frame_at < timedelta(seconds=5)
        assert steps["received"] < last_frame_at
    assert {row[0] for row in found["spans"]} == {"demo", "c311-serial"}
    report = found["report"]
    assert report["analyser_to_stored"]["count"] >= 2
    assert report["results_stored"] >= 6
    assert report["verified_to_record_ack"]["count"] >= 1
    assert 0 < report["verified_to_record_ack"]["p50"] < 30
    assert found["technician_status"] == 403
    assert found["health"]["components"]["turnaround_indexer"]["state"] == "up"
    # The lab's own log names no patient: the order carried the national number and the name.
    log = (tmp_path / "lab-serve.log").read_text(encoding="utf-8", errors="replace")
    assert "analyser" in log  # the analysers' lines were up and logging
    assert patient.fnr not in log and patient.family not in log
    assert not re.search(r"(?<!\d)\d{6}[ -]?\d{5}(?!\d)", log)  # no national number at all


def _steps(engine: Engine, placer: str, edta: str, serum: str) -> dict[str, datetime]:
    with engine.connect() as connection:
        order_in, order_acked = connection.execute(
            text(
                "SELECT created_at, finished_at FROM hl7_message WHERE direction = 'in' "
                "AND control_id = :c AND status = 'processed'"
            ),
            {"c": f"{placer}-1"},
        ).one()
        received, recorded, verified = connection.execute(
            text(
                "SELECT max(s.received_at), max(r.recorded_at), max(r.verified_at) "
                "FROM specimen s JOIN result r ON r.specimen_id = s.id "
                "WHERE s.accession_number IN (:a, :b)"
            ),
            {"a": edta, "b": serum},
        ).one()
    return {
        "order_in": order_in,
        "order_acked": order_acked,
        "received": received,
        "recorded": recorded,
        "verified": verified,
    }


def test_roles_split_the_parts(committed_database: ScratchDatabase, tmp_path: Path) -> None:
    """LAB_ROLES=web opens no MLLP or analyser port; a node without web serves only /healthz."""
    import socket
    import urllib.error
    import urllib.request

    def listening(port: int) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    def status(base: str, path: str) -> int:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return error.code

    for roles, web in (("web", True), ("hl7,instruments", False)):
        mllp_port, astm_port = free_port(), free_port()
        lab = LabProcess(
            env={
                "LAB_DATABASE_URL": committed_database.url,
                "LAB_DATA_DIR": str(tmp_path / roles),
                "LAB_MLLP_PORT": str(mllp_port),
                "LAB_DEMO_ASTM_PORT": str(astm_port),
                "LAB_ROLES": roles,
            },
            http_port=free_port(),
            log_path=tmp_path / f"{roles}.log",
        )
        lab.start()
        try:
            health = lab.wait_healthy(5)
            assert listening(mllp_port) is not web and listening(astm_port) is not web
            assert ("hl7_listener" in health["components"]) is not web
            assert status(lab.base, "/api/v1/catalog/tests") == (401 if web else 404)
        finally:
            lab.stop()
    bad = LabProcess(
        env={"LAB_DATABASE_URL": committed_database.url, "LAB_ROLES": "web,analysers"},
        http_port=free_port(),
        log_path=tmp_path / "bad.log",
    )
    with pytest.raises(RuntimeError):
        bad.start(wait=20)
    assert "LAB_ROLES" in bad.log_path.read_text()
