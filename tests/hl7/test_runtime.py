"""End to end in the app: an order in over MLLP, a result verified, the ORU out to the record."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from lab.config import Settings
from lab.hl7.codec.er7 import parse_message
from lab.hl7.codec.validation import validate_strict
from lab.hl7.dispatcher import DeliveryPolicy
from lab.hl7.runtime import Timing, starter
from lab.main import create_app
from lab.orders import service as orders
from lab.results import outbox
from lab.results import service as results
from lab.results.service import Measurement
from lab.specimens import service as specimens
from lab.users.roles import Role
from testkit.patients import random_national_number
from testkit.record import FakeRecord
from tests.conftest import actor
from tests.hl7.conftest import LoopThread, exchange, msa, oml, unique

pytestmark = pytest.mark.usefixtures("empty_outbox")


def test_order_in_result_out(
    hl7_engine: Engine,
    committing: sessionmaker[Session],
    loop_thread: LoopThread,
    tokens: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbox, "hold_time", lambda: __import__("datetime").timedelta(0))
    receiver = FakeRecord()
    ehr_port = loop_thread.run(receiver.start())
    settings = Settings(mllp_port=0, ehr_mllp_url=f"mllp://127.0.0.1:{ehr_port}")
    run = starter(
        settings,
        policy=DeliveryPolicy(ack_timeout=2, backoff_base=0.05),
        timing=Timing(dispatch_every=0.2, release_every=0.5),
    )
    app = create_app(settings, engine=hl7_engine, session_factory=committing, starters=[run])
    placer = unique("P")
    with TestClient(app) as client:
        assert "address" not in client.get("/healthz").json()["components"]["hl7_listener"]
        signed_in = {"Authorization": f"Bearer {tokens['admin']}"}
        health = client.get("/healthz", headers=signed_in).json()["components"]
        assert health["hl7_listener"]["state"] == "up"
        port = int(health["hl7_listener"]["address"].rsplit(":", 1)[1])
        control_id = unique("C")
        [ack] = asyncio.run(
            exchange(
                port, [oml(control_id=control_id, placer=placer, fnr=random_national_number())]
            )
        )
        assert msa(ack) == ("AA", control_id)
        with committing() as session:
            order = orders.find_by_placer(session, placer, "EPIC")
            assert order is not None
            [tube] = specimens.tubes_of_order(session, order.id)
            specimens.receive(session, actor=actor(Role.TECHNICIAN), number=tube.accession_number)
            outcome = results.record(
                session,
                actor=actor(Role.INSTRUMENT, "XN-1"),
                measurement=Measurement(
                    accession_number=tube.accession_number, test_code="HB", value="13.9"
                ),
            )
            session.commit()
        verified = client.post(
            f"/api/v1/results/{outcome.result_id}/verify",
            headers={"Authorization": f"Bearer {tokens['physician']}"},
            json={},
        )
        assert verified.status_code == 200, verified.text
        deadline = time.monotonic() + 10
        while not receiver.filed and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(receiver.filed) == 1
        time.sleep(0.3)
        outbox_health = client.get("/healthz").json()["components"]["hl7_outbox"]
        assert outbox_health["queued"] == 0 and outbox_health["last_delivery_at"]
        assert "claimant" not in outbox_health  # for those signed in only
        signed_in = client.get(
            "/healthz", headers={"Authorization": f"Bearer {tokens['admin']}"}
        ).json()["components"]["hl7_outbox"]
        assert isinstance(signed_in["claimant"], int)  # the number its claims carry
        log = client.get(
            "/api/v1/messages?direction=out", headers={"Authorization": f"Bearer {tokens['admin']}"}
        ).json()
        assert log[0]["status"] == "acknowledged" and log[0]["ack_code"] == "AA"
        detail_admin = client.get(
            f"/api/v1/messages/{log[0]['id']}",
            headers={"Authorization": f"Bearer {tokens['admin']}"},
        ).json()
        assert detail_admin["content"] is None  # metadata only for the administrator
        detail = client.get(
            f"/api/v1/messages/{log[0]['id']}",
            headers={"Authorization": f"Bearer {tokens['physician']}"},
        ).json()
        oru = parse_message(detail["content"].encode())
        validate_strict(oru)
        obr = oru.segment("OBR")
        assert obr is not None and obr.component(2, 1) == placer
        assert [s.text(11) for s in oru.segments_named("OBX")] == ["F"]
        technician = client.get(
            "/api/v1/messages", headers={"Authorization": f"Bearer {tokens['technician']}"}
        )
        assert technician.status_code == 403
    loop_thread.run(receiver.stop())
