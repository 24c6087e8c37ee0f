"""ACKs in original and enhanced mode, ERR in v2.5 form, hl7apy STRICT on all of them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lab.hl7.codec.ack import (
    AckCode,
    Outcome,
    build_ack,
    outcome_of,
    requested_acknowledgements,
)
from lab.hl7.codec.er7 import Message, parse_message, parse_text
from lab.hl7.codec.errors import ErrorCode, Problem, Severity
from lab.hl7.codec.inbound import map_inbound
from lab.hl7.codec.validation import validate_strict
from tests.hl7.samples import sample, sample_bytes

NOW = datetime(2026, 11, 27, 8, 15, 3, tzinfo=UTC)


def inbound(accept: str = "", application: str = "", charset: str = "UNICODE UTF-8") -> Message:
    return parse_text(
        "MSH|^~\\&|EPIC|HMN|LAB|STOLAV|20261127081502+0100||OML^O21^OML_O21|HMN-42|P|2.5.1"
        f"|||{accept}|{application}||{charset}\r"
        "PID|1||15038524094^^^NOR^FNR||Sætre^Ingrid\r"
    )


def test_original_mode_accept() -> None:
    message = inbound()
    request = requested_acknowledgements(message)
    assert not request.enhanced
    assert request.commit_code(Outcome.ACCEPTED) is None
    assert request.application_code(Outcome.ACCEPTED) is AckCode.APPLICATION_ACCEPT
    ack = build_ack(message, code=AckCode.APPLICATION_ACCEPT, control_id="LAB-1", now=NOW)
    validate_strict(ack)
    msh = ack.header
    assert (msh.text(3), msh.text(4), msh.text(5), msh.text(6)) == ("LAB", "STOLAV", "EPIC", "HMN")
    assert ack.message_type == ("ACK", "O21", "ACK")
    assert (msh.text(10), msh.text(11), msh.text(12), msh.text(18)) == (
        "LAB-1",
        "P",
        "2.5.1",
        "UNICODE UTF-8",
    )
    assert msh.text(15) == msh.text(16) == ""
    msa = ack.segment("MSA")
    assert msa is not None and (msa.text(1), msa.text(2)) == ("AA", "HMN-42")
    assert ack.segment("ERR") is None
    assert parse_message(ack.encode()).to_er7() == ack.to_er7()


@pytest.mark.parametrize(
    ("accept", "application", "outcome", "commit", "app"),
    [
        ("AL", "AL", Outcome.ACCEPTED, "CA", "AA"),
        ("AL", "NE", Outcome.ERROR, "CE", None),
        ("NE", "AL", Outcome.REJECTED, None, "AR"),
        ("ER", "SU", Outcome.ACCEPTED, None, "AA"),
        ("ER", "SU", Outcome.ERROR, "CE", None),
        ("SU", "ER", Outcome.ACCEPTED, "CA", None),
        ("SU", "ER", Outcome.REJECTED, None, "AR"),
        ("", "AL", Outcome.ACCEPTED, None, "AA"),
        ("AL", "", Outcome.ACCEPTED, "CA", None),
    ],
)
def test_enhanced_mode_table_0155(
    accept: str, application: str, outcome: Outcome, commit: str | None, app: str | None
) -> None:
    message = inbound(accept, application)
    request = requested_acknowledgements(message)
    assert request.enhanced
    commit_code = request.commit_code(outcome)
    app_code = request.application_code(outcome)
    assert (commit_code.value if commit_code else None) == commit
    assert (app_code.value if app_code else None) == app
    for code in (commit_code, app_code):
        if code is not None:
            ack = build_ack(message, code=code, control_id=f"LAB-{code.value}", now=NOW)
            validate_strict(ack)
            msa = ack.segment("MSA")
            assert msa is not None and msa.text(1) == code.value
            assert ack.header.text(15) == ack.header.text(16) == "NE"


def test_error_ack_with_err_segments_v25() -> None:
    message = parse_message(
        sample_bytes("oml_o21_single.hl7")
        .replace(b"|F|||", b"|Q|||")
        .replace(b"ORC|NW|HMN-ORD-1001^EPIC|", b"ORC|NW||")
        .replace(b"OBR|1|HMN-ORD-1001^EPIC|", b"OBR|1||")
    )
    outcome = map_inbound(message)
    assert outcome.content is None
    assert outcome_of(outcome.problems) is Outcome.ERROR
    ack = build_ack(
        message,
        code=AckCode.APPLICATION_ERROR,
        control_id="LAB-2",
        now=NOW,
        problems=outcome.problems,
    )
    validate_strict(ack)
    errs = ack.segments_named("ERR")
    rendered = {(e.field(2).wire, e.field(3).wire, e.text(4)) for e in errs}
    assert ("PID^1^8", "103^Table value not found^HL70357", "E") in rendered
    assert ("ORC^1^2", "101^Required field missing^HL70357", "E") in rendered
    assert all(e.text(8) for e in errs)


def test_reject_for_unsupported_type_and_component_location() -> None:
    message = parse_text(
        "MSH|^~\\&|EPIC|HMN|LAB|STOLAV|20261127||SIU^S12^SIU_S12|X9|P|2.5.1\rSCH|1\r"
    )
    outcome = map_inbound(message)
    assert outcome_of(outcome.problems) is Outcome.REJECTED
    ack = build_ack(
        message,
        code=AckCode.APPLICATION_REJECT,
        control_id="LAB-3",
        now=NOW,
        problems=outcome.problems,
    )
    validate_strict(ack)
    err = ack.segment("ERR")
    assert err is not None
    assert err.field(2).wire == "MSH^1^9^1^1"
    assert err.component(3, 1) == "200"
    assert ack.message_type == ("ACK", "S12", "ACK")


def test_warnings_do_not_stop_acceptance() -> None:
    warning = Problem(
        segment_id="TQ1",
        field_position=9,
        code=ErrorCode.TABLE_VALUE_NOT_FOUND,
        severity=Severity.WARNING,
        message="priority P read as routine",
    )
    assert outcome_of([warning]) is Outcome.ACCEPTED


def test_ack_keeps_latin1_and_partner_delimiters() -> None:
    message = sample("orm_o01_latin1.hl7")
    problem = Problem(
        segment_id="PID",
        field_position=5,
        code=ErrorCode.UNKNOWN_KEY_IDENTIFIER,
        message="Ukjent pasient: Ødegård",
    )
    ack = build_ack(
        message, code=AckCode.APPLICATION_ERROR, control_id="LAB-4", now=NOW, problems=[problem]
    )
    wire = ack.encode()
    assert b"|8859/1\r" in wire and "Ødegård".encode("latin-1") in wire
    validate_strict(ack)
    odd = parse_text("MSH#!-$%#A#B#C#D#2026##ADT!A08#7#P#2.5.1\rPID#1\r")
    odd_ack = build_ack(odd, code=AckCode.APPLICATION_ACCEPT, control_id="9", now=NOW)
    assert odd_ack.to_er7().startswith("MSH#!-$%#C#D#A#B#")
    assert parse_message(odd_ack.encode()).message_type == ("ACK", "A08", "ACK")
