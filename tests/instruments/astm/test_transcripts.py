"""Replay the vendor-style transcripts in tests/data/astm through a host connection."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instruments.astm.errors import TranscriptError
from instruments.astm.events import Event, FrameRejected, MessageReceived
from instruments.astm.link import Connection, Role
from instruments.astm.message import Message
from instruments.astm.record_codec import build_records, parse_records
from instruments.astm.records import (
    CommentRecord,
    HeaderRecord,
    OrderRecord,
    PatientRecord,
    QueryRecord,
    TerminatorRecord,
    UniversalTestId,
)
from instruments.astm.transcript import (
    TranscriptEntry,
    _decode_slowly,
    decode_payload,
    encode_payload,
    format_transcript,
    read_transcript,
    replay,
)

from .support import DATA


def load(name: str, encoding: str = "latin-1", **kwargs: object) -> tuple[Message, list[Event]]:
    result = replay(read_transcript((DATA / name).read_text(encoding="ascii")), **kwargs)  # type: ignore[arg-type]
    assert result.written == result.expected_written
    messages = result.messages()
    assert len(messages) == 1 and messages[0].complete
    return Message.from_records(
        parse_records(messages[0].records, encoding=encoding)
    ), result.events


def test_generic_results() -> None:
    message, _ = load("generic_lis2a2_results.astm")
    assert message.problems == []
    patient = message.patients[0]
    assert patient.patient is not None and patient.patient.name == ("Bjørnstad", "Åse", "M")
    order = patient.orders[0]
    assert order.order is not None and order.order.specimen_id == "LAB0001234"
    assert [t.code for t in order.order.tests] == ["HB", "CRP", "NA", "K"]
    results = {r.result.test.code: r for r in order.results}
    assert results["K"].result.abnormal_flags == ("HH",)
    assert results["CRP"].comments[0].comment_text == ("Hemolytisk prøve", "HEM")  # type: ignore[attr-defined]
    assert results["HB"].result.completed_at == datetime(2026, 1, 27, 8, 14)


def test_sysmex_xn_results_with_a_record_longer_than_a_frame() -> None:
    message, _ = load("sysmex_xn_results.astm")
    assert message.header is not None and message.header.version == "E1394-97"
    order = message.orders()[0].order
    assert order is not None
    assert order.instrument_specimen_id[0][2].strip() == "LAB0005678"
    assert len(order.tests) == 26 and order.tests[0].code == "WBC"
    assert [(r.test.code, r.test.dilution, r.value) for _, r in message.results()][:2] == [
        ("WBC", "1", "7.95"),
        ("RBC", "1", "4.50"),
    ]


def test_cobas_c311_results_with_noise_and_a_comment_after_every_result() -> None:
    message, events = load("cobas_c311_results.astm")
    assert sum(isinstance(e, FrameRejected) for e in events) == 1
    assert message.problems == []
    assert message.header is not None
    assert message.header.special_instructions == ("RSUPL", "REAL")
    results = message.orders()[0].results
    assert [(r.result.test.code, r.result.value) for r in results] == [
        ("685", "4.2"),
        ("687", "140"),
    ]
    assert all(isinstance(r.comments[0], CommentRecord) for r in results)
    assert results[0].result.instrument == ("P1",)


def test_ortho_vision_results_in_windows_1252_with_a_repeated_frame() -> None:
    message, _ = load("ortho_vision_results.astm", encoding="cp1252")
    patient = message.patients[0].patient
    assert patient is not None and patient.name == ("Søvik", "Øystein", "Ærlig")
    order = message.orders()[0]
    assert [r.result.test.code for r in order.results] == ["ABO", "RH"]  # the copy was dropped
    comment = order.results[1].comments[0]
    assert isinstance(comment, CommentRecord)
    assert comment.comment_text == ("Svak reaksjon – kontroller “D”",)


def test_genexpert_results_with_its_own_delimiters_in_utf_8() -> None:
    message, _ = load("genexpert_results.astm", encoding="utf-8")
    assert message.header is not None and message.header.delimiters.repeat == "@"
    patient = message.patients[0].patient
    assert patient is not None and patient.name == ("Hætta", "Máret Ŋuolggá Čáhppes")
    results = message.orders()[0].results
    assert [r.result.value for r in results] == ["MTB DETECTED LOW", "Rif Resistance NOT DETECTED"]
    comment = results[1].comments[0]
    assert comment.field(4) == (("Probe check ^ passed",), ("Lot 1234",))


def test_cobas_e411_query_is_answered_with_the_instrument_specimen_id_echoed() -> None:
    def answer(connection: Connection, message: MessageReceived, now: float) -> None:
        connection.confirm_received(now)
        header, query, _ = parse_records(message.records)
        assert isinstance(header, HeaderRecord) and isinstance(query, QueryRecord)
        assert header.special_instructions == ("TSREQ", "REAL")
        assert query.specimen_id == "000004" and query.all_tests
        reply = [
            HeaderRecord.create(
                sender="host",
                receiver="cobas-e411",
                special_instructions=("TSDWN", "REPLY"),
                version="1",
                timestamp=datetime(2026, 1, 27, 11, 0, 2),
            ),
            PatientRecord.create(),
            OrderRecord.create(
                specimen_id=query.specimen_id,
                instrument_specimen_id=(query.starting_range[2:],),
                tests=[UniversalTestId.local("10"), UniversalTestId.local("20")],
                action_code="A",
                report_type="Q",
            ),
            TerminatorRecord.create(),
        ]
        connection.send_message(build_records(reply), now)

    result = replay(
        read_transcript((DATA / "cobas_e411_query.astm").read_text(encoding="ascii")),
        on_message=answer,
    )
    assert result.written == result.expected_written


def test_transcript_format_round_trip_and_errors() -> None:
    entries = [
        TranscriptEntry(time=0.0, writer=Role.INSTRUMENT, data=b"\x05"),
        TranscriptEntry(time=1.5, writer=Role.HOST, data=b"<\xe6> \x7f "),
    ]
    text = format_transcript(entries)
    assert text == "> <ENQ>\n@ 1.5\n< <x3C><xE6>> <x7F><x20>\n"
    assert read_transcript(text) == entries
    for bad in ["> <BOGUS>", "> a<b", "x <ENQ>", ">no space", "@ soon", "> æ"]:
        with pytest.raises(TranscriptError):
            read_transcript(bad)


@given(st.binary(max_size=300))
def test_payload_encoding_round_trip(data: bytes) -> None:
    payload = encode_payload(data)
    assert payload.isascii() and "\n" not in payload and "\r" not in payload
    assert decode_payload(payload) == data


# Text made of pieces that come close to tokens, so the fast path meets every kind of fault.
_PIECES = st.sampled_from(
    [
        "<",
        ">",
        "<STX>",
        "<CR>",
        "<x3C>",
        "<x3c>",
        "<xE6>",
        "<BOGUS>",
        "<X3C>",
        "<ZZ>",
        "<NUL>",
        "<US>",
        "<x7F>",
        "CR>",
        "STX",
        "x3",
        "æ",
        "a",
        "|",
        " ",
        "\x01",
    ]
)


@given(st.lists(st.one_of(_PIECES, st.text(max_size=4)), max_size=12))
def test_payload_decoding_agrees_with_the_token_by_token_reading(pieces: list[str]) -> None:
    """The indexer's fast path gives the same bytes, or the same error, as a reading token
    by token (`_decode_slowly`)."""
    payload = "".join(pieces)
    try:
        expected: bytes | str = _decode_slowly(payload, 7)
    except TranscriptError as error:
        expected = str(error)
    try:
        got: bytes | str = decode_payload(payload, line_number=7)
    except TranscriptError as error:
        got = str(error)
    assert got == expected


RESULT_TRANSCRIPTS = sorted(p.name for p in DATA.glob("*_results.astm"))


@pytest.mark.parametrize("name", RESULT_TRANSCRIPTS)
@pytest.mark.parametrize("how", ["whole", "one byte at a time", "trailing data"])
def test_transcripts_give_the_same_records_however_the_bytes_arrive(name: str, how: str) -> None:
    entries = read_transcript((DATA / name).read_text(encoding="ascii"))
    by_line = replay(entries)
    stream = b"".join(e.data for e in entries if e.writer is Role.INSTRUMENT)
    if how == "whole":
        pieces = [stream]
    elif how == "one byte at a time":
        pieces = [stream[i : i + 1] for i in range(len(stream))]
    else:
        pieces = [stream + b"\x05\x021H|"]
    fed = replay([TranscriptEntry(time=0.0, writer=Role.INSTRUMENT, data=p) for p in pieces])
    assert [m.records for m in fed.messages()] == [m.records for m in by_line.messages()]
    expected_written = by_line.written + (b"\x06" if how == "trailing data" else b"")
    assert fed.written == expected_written
