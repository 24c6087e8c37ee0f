"""The test kit itself: its identifiers are valid, its orders are what the lab module takes, and
its fake record answers as each behaviour says (over real sockets)."""

from __future__ import annotations

import asyncio
import random
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.hl7.codec.er7 import parse_message
from lab.hl7.codec.inbound import map_inbound
from lab.hl7.codec.oru import build_oru
from lab.hl7.codec.types import OrderMessage
from lab.patients.identifiers import IdentifierKind, parse_national_identifier
from testkit.mllp import ClosedBeforeAnswer, ack_code, send_hl7
from testkit.orders import oml_o21
from testkit.patients import national_number, random_national_number, synthetic_patients
from testkit.record import Action, FakeRecord
from testkit.results import ten_results

births = st.dates(min_value=date(1900, 1, 1), max_value=date(1999, 12, 31))


@given(born=births, individual=st.integers(0, 450), d_number=st.booleans())
def test_national_numbers_are_valid_for_their_birth_date(
    born: date, individual: int, d_number: bool
) -> None:
    parsed = parse_national_identifier(national_number(born, individual, d_number=d_number))
    assert parsed.birth_date == born
    assert parsed.kind is (IdentifierKind.DNR if d_number else IdentifierKind.FNR)


@given(born=births, individual=st.integers(0, 450))
def test_h_numbers_are_valid(born: date, individual: int) -> None:
    parsed = parse_national_identifier(national_number(born, individual, h_number=True))
    assert parsed.kind is IdentifierKind.HNR and parsed.birth_date == born


@given(seed=st.integers(0, 10**6))
def test_random_numbers_are_valid(seed: int) -> None:
    assert parse_national_identifier(random_national_number(random.Random(seed))).kind is (
        IdentifierKind.FNR
    )


def test_an_order_is_read_as_sent() -> None:
    (patient,) = synthetic_patients(1, seed=3)
    raw = oml_o21(control_id="TK-1", placer="TK1", patient=patient, tests=["CRP", ("HB", "L")])
    outcome = map_inbound(parse_message(raw))
    assert outcome.problems == ()
    assert isinstance(outcome.content, OrderMessage)
    assert [t.service.code for t in outcome.content.tests if t.service is not None] == ["CRP", "HB"]
    assert outcome.content.patient.birth_date == patient.born


def _oru(control_id: str) -> bytes:
    return build_oru(ten_results()).encode().replace(b"LAB-000001", control_id.encode())


@pytest.mark.parametrize("answer", ["AA", "AE", "AR"])
def test_the_record_answers_as_told(answer: Action) -> None:
    record = FakeRecord(lambda control_id, attempt: answer)

    async def scenario() -> list[bytes]:
        port = await record.start()
        try:
            return await send_hl7("127.0.0.1", port, [_oru("C1"), _oru("C1")])
        finally:
            await record.stop()

    acks = asyncio.run(scenario())
    assert [ack_code(ack) for ack in acks] == [answer, answer]
    ack = parse_message(acks[0])
    msa = ack.segment("MSA")
    assert msa is not None and msa.text(2) == "C1"
    assert ack.header.text(9).startswith("ACK")
    assert bool(list(ack.segments_named("ERR"))) is (answer != "AA")
    assert record.received_ids == ["C1", "C1"]
    assert record.filed_ids == (["C1"] if answer == "AA" else [])  # filed once per MSH-10


@pytest.mark.parametrize("action", ["cut", "down"])
def test_the_record_drops_the_line_then_files_the_retry(action: Action) -> None:
    record = FakeRecord(lambda control_id, attempt: action if attempt == 1 else "AA")

    async def scenario() -> list[bytes]:
        port = await record.start()
        try:
            with pytest.raises(ClosedBeforeAnswer):
                await send_hl7("127.0.0.1", port, [_oru("C2")], timeout=5)
            return await send_hl7("127.0.0.1", port, [_oru("C2")], timeout=5)
        finally:
            await record.stop()

    assert [ack_code(ack) for ack in asyncio.run(scenario())] == ["AA"]
    assert record.received_ids == ["C2", "C2"] and record.filed_ids == ["C2"]


def test_a_slow_record_answers_late() -> None:
    record = FakeRecord(lambda control_id, attempt: "slow", slow_seconds=0.5)

    async def scenario() -> None:
        port = await record.start()
        try:
            with pytest.raises(TimeoutError):
                await send_hl7("127.0.0.1", port, [_oru("C3")], timeout=0.2)
        finally:
            await record.stop()

    asyncio.run(scenario())
    assert record.received_ids == ["C3"]


def test_a_stopped_record_refuses_and_comes_back_on_its_port() -> None:
    record = FakeRecord()

    async def scenario() -> list[bytes]:
        port = await record.start()
        await record.stop()
        with pytest.raises(OSError):
            await send_hl7("127.0.0.1", port, [_oru("C4")], timeout=5)
        await record.start(port)
        try:
            return await send_hl7("127.0.0.1", port, [_oru("C4")], timeout=5)
        finally:
            await record.stop()

    assert [ack_code(ack) for ack in asyncio.run(scenario())] == ["AA"]
