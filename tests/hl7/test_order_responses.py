"""Order responses over a real socket: ORL^O22 for OML^O21 and ORR^O02 for ORM^O01 when the
sender asks for application acknowledgements (MSH-16, enhanced mode); the generic ACK otherwise.
Every response passes hl7apy STRICT validation."""

from __future__ import annotations

import hl7
import pytest
from sqlalchemy.orm import Session, sessionmaker

from lab.hl7.codec.er7 import parse_message
from lab.hl7.codec.validation import validate_strict
from lab.orders import service as orders
from lab.specimens import service as specimens
from testkit.patients import random_national_number
from tests.hl7.conftest import LoopThread, RunningListener, exchange, msa, oml, unique


def kind(answer: str) -> str:
    return "^".join(parse_message(answer.encode()).message_type)


def test_an_accepted_order_is_answered_with_orl_o22_carrying_the_order_status(
    listener: RunningListener, committing: sessionmaker[Session], loop_thread: LoopThread
) -> None:
    control_id, placer = unique("C"), unique("P")
    message = oml(
        control_id=control_id,
        placer=placer,
        fnr=random_national_number(),
        tests=(("HB", "L"), ("CRP", "L")),
        ack_modes="AL|AL",
    )
    commit, application = loop_thread.run(exchange(listener.port, [message], acks_each=2))
    assert kind(commit) == "ACK^O21^ACK" and msa(commit) == ("CA", control_id)
    assert kind(application) == "ORL^O22^ORL_O22" and msa(application) == ("AA", control_id)
    validate_strict(application)
    response = parse_message(application.encode())
    with committing() as session:
        order = orders.find_by_placer(session, placer, "EPIC")
        assert order is not None
        tubes = {
            ordered.test.code: tube.accession_number
            for tube in specimens.tubes_of_order(session, order.id)
            for ordered in specimens.tests_of(session, tube)
        }
        filler = order.filler_order_number
    orcs = response.segments_named("ORC")
    assert [orc.text(1) for orc in orcs] == ["OK", "OK"]
    assert {orc.text(5) for orc in orcs} == {"SC"}
    assert {orc.component(2, 1) for orc in orcs} == {placer}
    assert {orc.component(3, 1) for orc in orcs} == {filler}
    assert [obr.field(4).text(4) for obr in response.segments_named("OBR")] == ["HB", "CRP"]
    assert [spm.component(2, 2, 1) for spm in response.segments_named("SPM")] == [
        tubes["HB"],
        tubes["CRP"],
    ]
    # The record cancels one test: CR with status CA.
    cancel = oml(
        control_id=unique("C"),
        placer=placer,
        fnr=random_national_number(),
        tests=(("CRP", "L"),),
        control="CA",
        ack_modes="NE|AL",
    )
    [answer] = loop_thread.run(exchange(listener.port, [cancel]))
    assert kind(answer) == "ORL^O22^ORL_O22" and msa(answer)[0] == "AA"
    validate_strict(answer)
    [orc] = parse_message(answer.encode()).segments_named("ORC")
    assert (orc.text(1), orc.text(5)) == ("CR", "CA")


def test_a_refused_order_is_answered_with_orl_o22_and_err(
    listener: RunningListener, loop_thread: LoopThread
) -> None:
    control_id = unique("C")
    message = oml(
        control_id=control_id,
        placer=unique("P"),
        fnr=random_national_number(),
        tests=(("NOPE", "L"),),
        ack_modes="NE|ER",
    )
    [answer] = loop_thread.run(exchange(listener.port, [message]))
    assert kind(answer) == "ORL^O22^ORL_O22" and msa(answer) == ("AE", control_id)
    validate_strict(answer)
    assert parse_message(answer.encode()).segments_named("ERR")


def orm(control_id: str, placer: str, fnr: str, ack_modes: str, test: str = "HB") -> str:
    accept, application = ack_modes.split("|")
    return (
        f"MSH|^~\\&|DIPS|AHUS|LAB|STOLAV|20261127081502+0100||ORM^O01^ORM_O01|{control_id}|P|2.5.1"
        f"|||{accept}|{application}||UNICODE UTF-8\r"
        f"PID|1||{fnr}^^^NOR&2.16.578.1.12.4.1.4.1&ISO^FNR||Nordmann^Ola|||M\r"
        f"ORC|NW|{placer}^DIPS\r"
        f"OBR|1|{placer}^DIPS||{test}^{test}^L|||20261127080000+0100\r"
    )


@pytest.mark.parametrize(("test", "code"), [("HB", "AA"), ("NOPE", "AE")])
def test_a_legacy_order_is_answered_with_orr_o02(
    listener: RunningListener, loop_thread: LoopThread, test: str, code: str
) -> None:
    control_id, placer = unique("C"), unique("P")
    message = orm(control_id, placer, random_national_number(), "NE|AL", test)
    [answer] = loop_thread.run(exchange(listener.port, [message]))
    assert kind(answer) == "ORR^O02^ORR_O02" and msa(answer) == (code, control_id)
    validate_strict(answer)
    # The order group: PID, then ORC and OBR of each accepted test (ORR_O02 has no SPM); as
    # python-hl7, an outside reader, sees it.
    theirs = hl7.parse(answer)
    names = [str(segment[0]) for segment in theirs]
    if code == "AE":
        assert names == ["MSH", "MSA", "ERR"]
        return
    assert names == ["MSH", "MSA", "PID", "ORC", "OBR"]
    orc, obr = theirs.segment("ORC"), theirs.segment("OBR")
    assert (str(orc[1]), str(orc[5])) == ("OK", "SC")
    assert str(orc[2][0][0]) == placer and str(obr[2][0][0]) == placer
    assert str(orc[3][0][0]) == str(obr[3][0][0]) != ""  # our filler order number
    assert str(obr[4][0][0]) == "718-7" and str(obr[4][0][3]) == "HB"


def test_the_validator_takes_one_alternative_of_a_choice_and_no_more() -> None:
    """hl7apy checks a choice group as a sequence; ours accepts one alternative, never two."""
    from lab.hl7.codec.validation import StrictValidationError

    orr = (
        "MSH|^~\\&|LAB|STOLAV|DIPS|AHUS|20261127081502+0100||ORR^O02^ORR_O02|L1|P|2.5.1\r"
        "MSA|AA|C1\rPID|1||12345678901^^^NOR^FNR||Nordmann^Ola\r"
        "ORC|OK|P1^DIPS|F1^LAB||SC\rOBR|1|P1^DIPS|F1^LAB|718-7^Hemoglobin^LN^HB^Hemoglobin^L\r"
    )
    validate_strict(orr)
    with pytest.raises(StrictValidationError, match="ORR_O02_OBRRQDRQ1RXOODSODT_SUPPGRP"):
        validate_strict(orr + "RQD|1\r")  # two alternatives of one choice
    with pytest.raises(StrictValidationError, match="ORC"):
        validate_strict(orr.replace("ORC|OK|P1^DIPS|F1^LAB||SC\r", ""))


def test_original_mode_keeps_the_generic_ack(
    listener: RunningListener, loop_thread: LoopThread
) -> None:
    control_id = unique("C")
    message = oml(control_id=control_id, placer=unique("P"), fnr=random_national_number())
    legacy = orm(unique("C"), unique("P"), random_national_number(), "|")
    first, second = loop_thread.run(exchange(listener.port, [message, legacy]))
    assert kind(first) == "ACK^O21^ACK" and msa(first) == ("AA", control_id)
    assert kind(second) == "ACK^O01^ACK"
    validate_strict(first)
