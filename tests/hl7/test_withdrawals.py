"""Tests that will not be done reach the record at once: cancelled in the lab, specimen rejected.

End to end in the app: the order comes in over MLLP, the lab cancels a test and rejects tubes
through the JSON API, and the ORUs (OBR-25 `X`, the reason, SPM-21 with the table 0490 code)
reach testkit's FakeRecord over MLLP within 30 s, each passing hl7apy STRICT validation.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from lab.config import Settings
from lab.hl7.codec.er7 import Message, parse_message
from lab.hl7.codec.oru import build_oru
from lab.hl7.codec.types import (
    SPECIMEN_REJECT_REASONS_0490,
    CodedValue,
    EntityId,
    Observation,
    ObservationStatus,
    Patient,
    PatientIdentifier,
    PersonName,
    ReportedSpecimen,
    ResultReport,
    ResultStatus,
    ValueType,
)
from lab.hl7.codec.validation import validate_strict
from lab.hl7.dispatcher import DeliveryPolicy
from lab.hl7.runtime import Timing, starter
from lab.main import create_app
from lab.orders import service as orders
from lab.results.outbound import REJECT_REASON_0490
from lab.specimens import queries as work_lists
from lab.specimens import service as specimens
from lab.specimens.service import REJECT_REASONS
from lab.tables import OUTBOUND, Hl7Message, Withdrawal
from testkit.patients import random_national_number
from testkit.record import FakeRecord
from tests.hl7.conftest import LoopThread, exchange, msa, oml, unique

pytestmark = pytest.mark.usefixtures("empty_outbox")


def test_every_lab_reason_has_its_0490_meaning_decided() -> None:
    # A new lab reason without a decision here would go out as a code it does not mean.
    assert set(REJECT_REASON_0490) == set(REJECT_REASONS)
    assert {code for code in REJECT_REASON_0490.values() if code} <= set(
        SPECIMEN_REJECT_REASONS_0490
    )
    assert REJECT_REASON_0490["RA"] is None  # the lab's RA is a wrong container, 0490 RA is not
    assert REJECT_REASON_0490["RH"] == "RH" and REJECT_REASON_0490["EX"] == "EX"


def outbound(factory: sessionmaker[Session], control_id: str) -> Message:
    with factory() as session:
        row = session.scalars(
            select(Hl7Message).where(
                Hl7Message.direction == OUTBOUND, Hl7Message.control_id == control_id
            )
        ).one()
        return parse_message(row.raw)


def wait_for(receiver: FakeRecord, count: int, seconds: float) -> float:
    started = time.monotonic()
    while len(receiver.filed) < count and time.monotonic() - started < seconds:
        time.sleep(0.1)
    return time.monotonic() - started


def test_cancelled_and_rejected_tests_reach_the_record_within_30_seconds(
    hl7_engine: Engine,
    committing: sessionmaker[Session],
    loop_thread: LoopThread,
    tokens: dict[str, str],
) -> None:
    receiver = FakeRecord()
    ehr_port = loop_thread.run(receiver.start())
    settings = Settings(mllp_port=0, ehr_mllp_url=f"mllp://127.0.0.1:{ehr_port}")
    # The default withdrawal interval (2 s): what `lab serve` runs.
    run = starter(
        settings,
        policy=DeliveryPolicy(ack_timeout=2, backoff_base=0.05),
        timing=Timing(dispatch_every=0.2),
    )
    app = create_app(settings, engine=hl7_engine, session_factory=committing, starters=[run])
    placer, record_cancel = unique("P"), unique("P")
    technician = {"Authorization": f"Bearer {tokens['technician']}"}
    with TestClient(app) as client:
        health = client.get(
            "/healthz", headers={"Authorization": f"Bearer {tokens['admin']}"}
        ).json()
        port = int(health["components"]["hl7_listener"]["address"].rsplit(":", 1)[1])
        fnr = random_national_number()
        tests = (("HB", "L"), ("CRP", "L"), ("NA", "L"), ("K", "L"))
        answers = asyncio.run(
            exchange(
                port,
                [
                    oml(control_id=unique("C"), placer=placer, fnr=fnr, tests=tests),
                    oml(control_id=unique("C"), placer=record_cancel, fnr=fnr),
                    # The record cancels its own order: it needs no ORU about it.
                    oml(control_id=unique("C"), placer=record_cancel, fnr=fnr, control="CA"),
                ],
            )
        )
        assert [msa(answer)[0] for answer in answers] == ["AA", "AA", "AA"]
        with committing() as session:
            order = orders.find_by_placer(session, placer, "EPIC")
            assert order is not None
            filler = order.filler_order_number
            tubes = {
                tube.container: tube.accession_number
                for tube in specimens.tubes_of_order(session, order.id)
            }
        assert set(tubes) == {"EDTA", "SERUM"}

        started = time.monotonic()
        cancelled = client.post(
            f"/api/v1/orders/{filler}/cancel",
            headers=technician,
            json={"codes": ["CRP"], "reason": "ordered twice"},
        )
        assert cancelled.status_code == 200, cancelled.text
        waited = wait_for(receiver, 1, 30)
        assert len(receiver.filed) == 1, "the cancellation reached the record"
        assert waited < 30

        rejected = client.post(
            f"/api/v1/specimens/{tubes['EDTA']}/reject",
            headers=technician,
            json={"reason": "RH", "comment": "visibly red"},
        )
        assert rejected.status_code == 200, rejected.text
        rejected = client.post(
            f"/api/v1/specimens/{tubes['SERUM']}/reject",
            headers=technician,
            json={"reason": "RA"},
        )
        assert rejected.status_code == 200, rejected.text
        wait_for(receiver, 3, 30)
        assert time.monotonic() - started < 30 + 30
        assert len(receiver.filed) == 3

        messages = [outbound(committing, control_id) for control_id in receiver.filed_ids]
        for message in messages:
            validate_strict(message)
            assert message.segment("ORC").component(2, 1) == placer  # type: ignore[union-attr]
            assert message.segment("OBR").text(25) == "X"  # type: ignore[union-attr]
            assert {obx.text(11) for obx in message.segments_named("OBX")} == {"X"}
        cancel, haemolysed, wrong_tube = messages

        assert [obx.field(3).text(4) for obx in cancel.segments_named("OBX")] == ["CRP"]
        assert "ordered twice" in cancel.segment("NTE").text(3)  # type: ignore[union-attr]
        assert cancel.segment("SPM") is None

        assert [obx.field(3).text(4) for obx in haemolysed.segments_named("OBX")] == ["HB"]
        spm = haemolysed.segment("SPM")
        assert spm is not None
        assert spm.field(21).text(1) == "RH" and spm.field(21).text(3) == "HL70490"
        assert spm.field(21).text(2) == "Hemolysis"
        assert "visibly red" in spm.field(21).text(9)
        assert spm.component(2, 2, 1) == tubes["EDTA"] and spm.text(20) == "N"
        assert "new specimen" in haemolysed.segment("NTE").text(3)  # type: ignore[union-attr]

        # The lab's RA (wrong container) is no 0490 code: text only, never 0490's RA.
        assert sorted(obx.field(3).text(4) for obx in wrong_tube.segments_named("OBX")) == [
            "K",
            "NA",
        ]
        spm = wrong_tube.segment("SPM")
        assert spm is not None
        assert spm.field(21).text(1) == "" and spm.field(21).text(3) == ""
        assert "wrong container" in spm.field(21).text(2)

        outbox = client.get(
            "/healthz", headers={"Authorization": f"Bearer {tokens['admin']}"}
        ).json()["components"]["hl7_outbox"]
        assert outbox["withdrawals_waiting"] == 0
        # The record's own cancellation was not reported back to it.
        with committing() as session:
            other = orders.find_by_placer(session, record_cancel, "EPIC")
            assert other is not None
            assert not session.scalars(
                select(Hl7Message).where(
                    Hl7Message.direction == OUTBOUND, Hl7Message.order_id == other.id
                )
            ).all()
            assert not session.scalars(
                select(Withdrawal).where(Withdrawal.message_id.is_(None))
            ).all()
            # The tests of the rejected tubes are not done: they stay on the overdue list.
            overdue = work_lists.overdue_tests(session, now=datetime.now(UTC), limit=10_000)
            waiting = {
                ordered.test.code for ordered, tube, _ in overdue if tube.order_id == order.id
            }
            assert waiting == {"HB", "NA", "K"}
            assert work_lists.count_overdue(session, now=datetime.now(UTC)) >= 3
    loop_thread.run(receiver.stop())


# --- the SPM of a rejected specimen, for any reason and any text ---------------------------

_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=60
)


@settings(max_examples=40, deadline=None)
@given(
    reason=st.sampled_from(sorted(REJECT_REASON_0490)),
    words=_TEXT,
    accession=st.from_regex(r"\A[0-9]{6,12}\Z"),
)
def test_a_rejected_specimen_report_passes_hl7apy_strict(
    reason: str, words: str, accession: str
) -> None:
    now = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
    report = ResultReport(
        control_id="LAB-1",
        created_at=now,
        sending_application="LAB",
        sending_facility="STOLAV",
        receiving_application="EPIC",
        receiving_facility="",
        patient=Patient(
            identifiers=(PatientIdentifier(id="123", assigning_authority="HMN"),),
            name=PersonName(family="Nordmann", given="Ola"),
        ),
        placer_order_number=EntityId(id="P1", namespace="EPIC"),
        filler_order_number=EntityId(id="LAB1", namespace="LAB"),
        service=CodedValue(code="718-7", text="Hemoglobin", coding_system="LN"),
        reported_at=now,
        result_status=ResultStatus.CANCELLED,
        observations=(
            Observation(
                loinc=CodedValue(code="718-7", text="Hemoglobin", coding_system="LN"),
                local=CodedValue(code="HB", text="Hemoglobin", coding_system="L"),
                value_type=ValueType.STRING,
                value=None,
                status=ObservationStatus.CANNOT_BE_OBTAINED,
            ),
        ),
        comments=(f"specimen rejected: {words}",),
        specimen=ReportedSpecimen(
            accession_number=accession,
            filler_namespace="LAB",
            specimen_type="BLD",
            collected_at=now,
            rejected=True,
            reject_reason=REJECT_REASON_0490[reason],
            reject_text=words,
        ),
    )
    message = parse_message(build_oru(report).encode())
    validate_strict(message)
    spm = message.segment("SPM")
    assert spm is not None
    code = REJECT_REASON_0490[reason]
    assert spm.field(21).text(1) == (code or "")
    assert spm.field(21).text(9 if code else 2) == words
