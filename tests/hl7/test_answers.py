"""Every message gets exactly one answer, over a real MLLP socket, and nothing is half-written.

A value longer than the column that stores it (limits read from lab.tables), a wrong type or a
structure we cannot take is answered with AE/AR and an ERR naming segment and field; the
connection goes on serving the next message. The property test sends hypothesis-made order and
patient messages with over-long and odd fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from lab.hl7.codec.er7 import parse_message
from lab.hl7.limits import column_length
from lab.patients import service as patients
from lab.tables import INBOUND, Hl7Message, Order, PatientIdentifier
from lab.tables import Patient as StoredPatient
from testkit.mllp import MllpConnection
from testkit.patients import random_national_number
from tests.hl7.conftest import LoopThread, RunningListener, err_locations, msa, unique

FNR = "^^^NOR&2.16.578.1.12.4.1.4.1&ISO^FNR"
NAME = column_length(StoredPatient.family_name)
PLACER = column_length(Order.placer_order_number)


@dataclass
class Fields:
    """The values of one order message; defaults make a valid OML^O21 for HB."""

    control_id: str
    placer: str
    fnr: str
    pid3: str = ""
    family: str = "Østbø"
    given: str = "Kari"
    birth: str = "19850315"
    sex: str = "F"
    namespace: str = "EPIC"
    provider: str = "9144889^Lien^Lise^^^^^^HPR"
    location: str = "HEMPOL^^^STOLAV"
    test: str = "HB^Hemoglobin^L"
    collected: str = "20261127080000+0100"
    message_type: str = "OML^O21^OML_O21"
    version: str = "2.5.1"
    charset: str = "UNICODE UTF-8"

    def text(self) -> str:
        pid3 = self.pid3 or f"{self.fnr}{FNR}"
        segments = [
            f"MSH|^~\\&|EPIC|HMN|LAB|STOLAV|20261127081502+0100||{self.message_type}"
            f"|{self.control_id}|P|{self.version}||||||{self.charset}",
            f"PID|1||{pid3}||{self.family}^{self.given}||{self.birth}|{self.sex}",
            f"PV1|1|O|{self.location}",
            f"ORC|NW|{self.placer}^{self.namespace}||||||||||{self.provider}",
            f"OBR|1|{self.placer}^{self.namespace}||{self.test}|||{self.collected}",
        ]
        return "\r".join(segments) + "\r"


def fresh(**changes: str) -> Fields:
    fields = Fields(control_id=unique("C"), placer=unique("P"), fnr=random_national_number())
    for name, value in changes.items():
        setattr(fields, name, value)
    return fields


async def one_then_next(port: int, message: bytes) -> tuple[str, str, str]:
    """Send `message`, read one answer, then send a good ADT on the same connection and read
    its answer: (first answer, next answer, the ADT's control ID). A second answer to the first
    message would be read in place of the ADT's and show up as a wrong MSA-2."""
    connection = await MllpConnection.open("127.0.0.1", port, timeout=10)
    follow_up = unique("N")
    adt = (
        "MSH|^~\\&|EPIC|HMN|LAB|STOLAV|20261127081502+0100||ADT^A08^ADT_A01|"
        f"{follow_up}|P|2.5.1||||||UNICODE UTF-8\rEVN|A08|20261127081500\r"
        f"PID|1||{random_national_number()}{FNR}||Nordmann^Ola|||M\r"
    )
    try:
        first = await connection.exchange(message, timeout=15)
        second = await connection.exchange(adt.encode(), timeout=15)
    finally:
        await connection.close()
    return first.decode("utf-8", "replace"), second.decode("utf-8", "replace"), follow_up


def orders_with_placer(factory: sessionmaker[Session], placer: str) -> int:
    with factory() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(Order).where(Order.placer_order_number == placer)
            )
            or 0
        )


def known_fnr(factory: sessionmaker[Session], fnr: str) -> bool:
    with factory() as session:
        return patients.find_by_identifier(session, fnr, "FNR") is not None


@pytest.mark.parametrize(
    ("change", "code", "location"),
    [
        ({"family": "X" * (NAME + 1)}, "AE", "PID^1^5^1^1"),
        ({"given": "Å" * (NAME + 1)}, "AE", "PID^1^5^1^2"),
        ({"placer": "P" * (PLACER + 1)}, "AE", "OBR^1^2^1^1"),
        ({"namespace": "N" * 65}, "AE", "OBR^1^2^1^2"),
        ({"provider": "1^" + "L" * 220}, "AE", "ORC^1^12"),
        ({"location": "W" * 201}, "AE", "PV1^1^3^1^1"),
        ({"pid3": "9" * 65 + "^^^HMN^PI"}, "AE", "PID^1^3^1^1"),
        ({"pid3": "123^^^" + "H" * 101 + "^PI"}, "AE", "PID^1^3^1^4"),
        ({"control_id": "C" * 65}, "AR", "MSH^1^10"),
        ({"birth": "19851399"}, "AE", "PID^1^7"),
        ({"collected": "20261127999999"}, "AE", "OBR^1^7^1^1"),
        ({"collected": "99991231235959-1400"}, "AE", "OBR^1^7^1^1"),
        ({"collected": "00010101000000+1400"}, "AE", "OBR^1^7^1^1"),
        ({"sex": "Q"}, "AE", "PID^1^8"),
        ({"message_type": "ORU^R01^ORU_R01"}, "AR", "MSH^1^9^1^1"),
    ],
)
def test_a_value_that_does_not_fit_is_answered_naming_the_field(
    listener: RunningListener,
    committing: sessionmaker[Session],
    loop_thread: LoopThread,
    change: dict[str, str],
    code: str,
    location: str,
) -> None:
    fields = fresh(**change)
    first, second, follow_up = loop_thread.run(one_then_next(listener.port, fields.text().encode()))
    assert msa(first) == (code, fields.control_id[:64] if code == "AE" else msa(first)[1])
    assert location in err_locations(first)
    assert msa(second) == ("AA", follow_up)  # the connection goes on
    # Nothing half-written: no order, and the new patient was not created either.
    assert orders_with_placer(committing, fields.placer) == 0
    assert not known_fnr(committing, fields.fnr)
    # The refused message is kept in the log with its answer.
    with committing() as session:
        row = session.scalars(
            select(Hl7Message)
            .where(Hl7Message.direction == INBOUND, Hl7Message.raw == fields.text().encode())
            .order_by(Hl7Message.id.desc())
        ).first()
        assert row is not None and row.status in ("error", "rejected")
        assert row.ack is not None and msa(row.ack)[0] == code


def test_an_over_long_order_resent_gets_the_same_answer(
    listener: RunningListener, committing: sessionmaker[Session], loop_thread: LoopThread
) -> None:
    fields = fresh(family="Y" * 300)
    first, _, _ = loop_thread.run(one_then_next(listener.port, fields.text().encode()))
    again, _, _ = loop_thread.run(one_then_next(listener.port, fields.text().encode()))
    assert msa(first)[0] == "AE" and again == first  # the stored answer, byte for byte


# --- the property: any variant gets exactly one answer, and the connection goes on -----------

_ODD = st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x0b\x1c")
_TEXT = st.one_of(
    st.text(_ODD, max_size=40),
    # Long values without delimiters, so that they stay one component.
    st.text(st.sampled_from("AbæøåŠŋ '-."), min_size=190, max_size=320),
)


@st.composite
def variants(draw: st.DrawFn) -> tuple[str, Fields]:
    kind = draw(st.sampled_from(["OML^O21^OML_O21", "ORM^O01^ORM_O01", "ADT^A08^ADT_A01"]))
    fields = fresh(message_type=kind)
    for name in ("family", "given", "location", "provider", "namespace"):
        if draw(st.booleans()):
            setattr(fields, name, draw(_TEXT))
    if draw(st.booleans()):
        fields.placer += "-" + "9" * draw(st.integers(0, 90))
    if draw(st.booleans()):
        fields.control_id += "-" + "7" * draw(st.integers(0, 80))
    fields.birth = draw(
        st.sampled_from(["19850315", "", '""', "1985", "19850230", "00000000", "29991231x"])
    )
    fields.sex = draw(st.sampled_from(["F", "M", "U", "", "X", "FF", '""']))
    fields.test = draw(
        st.sampled_from(["HB^Hb^L", "718-7^Hb^LN", "NOPE^x^L", "", "H" * 300 + "^x^L"])
    )
    fields.collected = draw(
        st.sampled_from(["20261127080000+0100", "", "2026", "99991231235959-1400", "x"])
    )
    fields.version = draw(st.sampled_from(["2.5.1", "2.5.1", "2.3", "9.9", ""]))
    fields.charset = draw(st.sampled_from(["UNICODE UTF-8", "UNICODE UTF-8", "8859/1", "KOI8"]))
    return kind, fields


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(variant=variants())
def test_any_variant_gets_exactly_one_answer_and_the_connection_goes_on(
    listener: RunningListener,
    committing: sessionmaker[Session],
    loop_thread: LoopThread,
    variant: tuple[str, Fields],
) -> None:
    kind, fields = variant
    raw = fields.text().encode("utf-8")
    first, second, follow_up = loop_thread.run(one_then_next(listener.port, raw), timeout=60)
    code, _ = msa(first)
    assert code in ("AA", "AE", "AR")
    if code != "AA":
        assert parse_message(first.encode()).segments_named("ERR"), "an error names its field"
    assert msa(second) == ("AA", follow_up)
    if kind != "ADT^A08^ADT_A01":
        # An order is placed whole or not at all.
        placed = orders_with_placer(committing, fields.placer)
        assert placed == (1 if code == "AA" else 0)
        if code != "AA":
            assert not known_fnr(committing, fields.fnr)


def test_the_limits_are_the_columns_own() -> None:
    # Change a column's length and the check follows: there is no second list to keep.
    assert column_length(PatientIdentifier.value) == 64
    assert column_length(StoredPatient.family_name) == NAME == 200
    assert column_length(Order.placer_order_number) == PLACER == 64
