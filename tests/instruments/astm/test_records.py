"""E1394 records: delimiters, escapes, character sets, typed accessors, round trips."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instruments.astm.codec import Delimiters, Field, format_timestamp, parse_timestamp
from instruments.astm.errors import RecordBuildError, RecordError
from instruments.astm.message import Message
from instruments.astm.record_codec import (
    build_record,
    build_records,
    parse_record,
    parse_records,
)
from instruments.astm.records import (
    CommentRecord,
    HeaderRecord,
    ManufacturerRecord,
    OrderRecord,
    PatientRecord,
    QueryRecord,
    Record,
    ResultRecord,
    TerminatorRecord,
    UniversalTestId,
    UnknownRecord,
)

GENEXPERT = Delimiters("|", "@", "^", "\\")


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"R|1|^^^HB|a&F&b", "a|b"),
        (b"R|1|^^^HB|a&S&b&R&c&E&d", "a^b\\c&d"),
        (b"R|1|^^^HB|Smith & Co", "Smith & Co"),  # bare & kept
        (b"R|1|^^^HB|A&B&C", "A&B&C"),  # not escapes
        (b"R|1|^^^HB|&X41&&X0D0A&", "A\r\n"),
        (b"R|1|^^^HB|&XZZ&", "&XZZ&"),
        (b"R|1|^^^HB|&", "&"),
    ],
)
def test_escapes_are_undone_after_splitting(raw: bytes, value: str) -> None:
    record = parse_record(raw)
    assert isinstance(record, ResultRecord)
    assert record.value == value


def test_escaped_delimiters_do_not_split() -> None:
    record = parse_record(b"O|1|A&R&B^C|x&S&y^z")
    assert record.field(3) == (("A\\B", "C"),)
    assert record.field(4) == (("x^y", "z"),)


def test_header_delimiters_are_read_from_the_record_and_h2_is_not_split() -> None:
    records = parse_records(
        [b"H|@^\\|||GeneXpert^4.8|||||LIS||P|1394-97|20260127130000", b"O|1|S1||^^^A@^^^B\\S\\"]
    )
    header, order = records
    assert isinstance(header, HeaderRecord) and isinstance(order, OrderRecord)
    assert header.delimiters == GENEXPERT
    assert header.field(2) == (("@^\\",),)
    assert header.sender == ("GeneXpert", "4.8")
    assert [t.code for t in order.tests] == ["A", "B^"]
    assert build_records(records) == [
        b"H|@^\\|||GeneXpert^4.8|||||LIS||P|1394-97|20260127130000",
        b"O|1|S1||^^^A@^^^B\\S\\",
    ]


@pytest.mark.parametrize("raw", [b"H|", b"H||^&", b"H|\\^&X", b"H|a^&|"])
def test_bad_delimiter_definitions_are_refused(raw: bytes) -> None:
    with pytest.raises(RecordError):
        parse_record(raw)


def test_minimal_header() -> None:
    header = parse_record(b"H|\\^&")
    assert isinstance(header, HeaderRecord)
    assert build_record(header) == b"H|\\^&"


@pytest.mark.parametrize(
    ("encoding", "raw", "name"),
    [
        ("latin-1", b"P|1||||Bj\xf8rnstad^\xc5se \xe6", ("Bjørnstad", "Åse æ")),
        ("cp1252", b"P|1||||S\xf8vik^\x96\x93\xe6\x94", ("Søvik", "–“æ”")),
        (
            "utf-8",
            "P|1||||Hætta^Máret Ŋuolggá Čáhppes".encode(),
            ("Hætta", "Máret Ŋuolggá Čáhppes"),
        ),
    ],
)
def test_character_sets(encoding: str, raw: bytes, name: tuple[str, ...]) -> None:
    patient = parse_record(raw, encoding=encoding)
    assert isinstance(patient, PatientRecord)
    assert patient.name == name
    assert build_record(patient, encoding=encoding) == raw


def test_text_the_character_set_lacks_is_refused_both_ways() -> None:
    with pytest.raises(RecordError):
        parse_record(b"P|1||||\xff\xfe", encoding="utf-8")
    with pytest.raises(RecordError):
        parse_record(b"P|1||||\x81", encoding="cp1252")
    with pytest.raises(RecordBuildError):
        build_record(PatientRecord.create(name=("Ŋuolga",)), encoding="latin-1")


def test_timestamps() -> None:
    assert parse_timestamp("20011001153000") == datetime(2001, 10, 1, 15, 30, 0)
    assert parse_timestamp("200110011530") == datetime(2001, 10, 1, 15, 30)
    assert parse_timestamp("20011001") == datetime(2001, 10, 1)
    assert parse_timestamp("") is None
    assert format_timestamp(datetime(2026, 1, 27, 8, 15, 3)) == "20260127081503"
    for bad in ("2001100115300", "20011301", "2001-10-01", "20010230120000"):
        with pytest.raises(RecordError):
            parse_timestamp(bad)


def test_universal_test_id_dialects() -> None:
    assert UniversalTestId.local("HB").code == "HB"
    sysmex = parse_record(b"R|1|^^^^WBC^1|7.95")
    cobas = parse_record(b"R|1|^^^685/|4.2")
    ortho = parse_record(b"R|1|ABO|A")
    assert isinstance(sysmex, ResultRecord) and isinstance(cobas, ResultRecord)
    assert isinstance(ortho, ResultRecord)
    assert (sysmex.test.code, sysmex.test.dilution) == ("WBC", "1")
    assert (cobas.test.code, cobas.test.dilution) == ("685", "")
    assert ortho.test.code == "ABO"
    order = parse_record(b"O|1|S1||ABO\\RH|R")
    assert isinstance(order, OrderRecord)
    assert [t.code for t in order.tests] == ["ABO", "RH"]


def test_typed_accessors() -> None:
    header, order, result, query, comment, end = parse_records(
        [
            b"H|\\^&|||c311^1|||||host|RSUPL^REAL|P|1|20260127101500",
            b"O|1| LAB0009999 |0^50001^3^^S1^SC|^^^685/\\^^^687/|S||20260127100000||||A||||1"
            b"||||||||||F",
            b"R|1|^^^685/|4.2|mmol/L|3.5 to 5.0|H\\>||F||op1^op2|20260127101000|20260127101400|P1",
            b"Q|1|^000004^40^0^5^^SAMPLE^NORMAL||ALL||||||||O",
            b"C|1|I|0^Flag text|I",
            b"L|1|I",
        ]
    )
    assert isinstance(header, HeaderRecord)
    assert header.special_instructions == ("RSUPL", "REAL")
    assert (header.processing_id, header.version) == ("P", "1")
    assert header.message_time == datetime(2026, 1, 27, 10, 15)
    assert isinstance(order, OrderRecord)
    assert order.specimen_id == "LAB0009999"
    assert order.instrument_specimen_id == (("0", "50001", "3", "", "S1", "SC"),)
    assert (order.priority, order.action_code, order.report_type) == ("S", "A", "F")
    assert order.collected_at == datetime(2026, 1, 27, 10, 0)
    assert isinstance(result, ResultRecord)
    assert (result.value, result.units, result.reference_range) == ("4.2", "mmol/L", "3.5 to 5.0")
    assert result.abnormal_flags == ("H", ">")
    assert (result.status, result.operator, result.instrument) == ("F", ("op1", "op2"), ("P1",))
    assert result.completed_at == datetime(2026, 1, 27, 10, 14)
    assert isinstance(query, QueryRecord)
    assert (query.patient_id, query.specimen_id, query.all_tests) == ("", "000004", True)
    assert query.request_status == "O"
    assert isinstance(comment, CommentRecord)
    assert comment.comment_text == ("0", "Flag text")
    assert isinstance(end, TerminatorRecord)
    assert end.termination_code == "I"


def test_create_writes_no_trailing_delimiters() -> None:
    order = OrderRecord.create(
        specimen_id="LAB1",
        instrument_specimen_id=(("40", "0", "5", "", "SAMPLE", "NORMAL"),),
        tests=[UniversalTestId.local("10"), UniversalTestId.local("20")],
        action_code="A",
        report_type="Q",
    )
    assert (
        build_record(order)
        == b"O|1|LAB1|40^0^5^^SAMPLE^NORMAL|^^^10\\^^^20|R||||||A||||||||||||||Q"
    )
    assert build_record(TerminatorRecord.create(code="I")) == b"L|1|I"
    assert build_record(QueryRecord.create(specimen_id="S1")) == b"Q|1|^S1||ALL||||||||O"
    result = ResultRecord.create(
        test=UniversalTestId.local("HB"), value="13.2", units="g/dL", abnormal_flags=["H", "A"]
    )
    assert build_record(result) == b"R|1|^^^HB|13.2|g/dL||H\\A||F"
    parsed = parse_record(b"P|1|||||||")
    assert build_record(parsed) == b"P|1|||||||"  # as received
    assert build_record(parsed, trim=True) == b"P|1"
    assert parsed.with_field(4, "X").fields[3] == (("X",),)


def test_unknown_and_manufacturer_records_are_kept_whole() -> None:
    unknown, manufacturer = parse_records([b"Z|1|anything^at|all", b"M|1|HIST|AAAA\\BBBB"])
    assert isinstance(unknown, UnknownRecord) and isinstance(manufacturer, ManufacturerRecord)
    assert build_records([unknown, manufacturer]) == [
        b"Z|1|anything^at|all",
        b"M|1|HIST|AAAA\\BBBB",
    ]


# --------------------------------------------------------------------------- round trips

_DELIMITER_CHARS = "|\\^&@!#$%*~`'\"/;:,."
delimiter_sets = st.permutations(_DELIMITER_CHARS).map(lambda chars: Delimiters(*chars[:4]))
component_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], max_codepoint=0x17F)
    | st.sampled_from(list(_DELIMITER_CHARS + "æøåÆØÅ")),
    max_size=12,
)
fields_strategy: st.SearchStrategy[Field] = st.lists(
    st.lists(component_text, min_size=1, max_size=4).map(tuple), min_size=1, max_size=3
).map(tuple)


@st.composite
def records(draw: st.DrawFn) -> tuple[Delimiters, list[Record]]:
    delimiters = draw(delimiter_sets)
    header = HeaderRecord.create(
        delimiters=delimiters, sender=draw(fields_strategy), version="LIS2-A2"
    )
    body: list[Record] = [header]
    for kind in draw(st.lists(st.sampled_from("POR CQMLZ"), max_size=5)):
        fields = [((kind.strip() or "S",),), *draw(st.lists(fields_strategy, max_size=40))]
        body.append(parse_record_type(kind.strip() or "S")(tuple(fields)))
    return delimiters, body


def parse_record_type(kind: str) -> type[Record]:
    from instruments.astm.record_codec import RECORD_CLASSES

    return RECORD_CLASSES.get(kind, UnknownRecord)


@settings(max_examples=200, deadline=None)
@given(records(), st.sampled_from(["utf-8", "latin-1"]))
def test_build_then_parse_gives_every_record_back(
    case: tuple[Delimiters, list[Record]], encoding: str
) -> None:
    _delimiters, message = case
    try:
        raws = build_records(message, encoding=encoding)
    except RecordBuildError:
        assert encoding == "latin-1"  # Sami letters above U+00FF
        return
    assert parse_records(raws, encoding=encoding) == message
    # and the bytes are canonical: parsing and building again changes nothing
    assert build_records(parse_records(raws, encoding=encoding), encoding=encoding) == raws
    for raw in raws:
        assert not set(raw) & {0x0D, 0x0A, 0x02, 0x03, 0x04, 0x05}  # fit for a frame


def test_message_groups_records_and_reports_sequence_problems_leniently() -> None:
    message = Message.from_records(
        parse_records(
            [
                b"H|\\^&",
                b"C|1|L|header note",
                b"P|1",
                b"O|1|S1||^^^HB",
                b"R|1|^^^HB|13",
                b"C|1|I|flag",
                b"M|1|HIST",
                b"R|3|^^^CRP|4",
                b"O|2|S2||^^^NA",
                b"R|1|^^^NA|140",
                b"P|2",
                b"O|1|S3",
                b"L|1|N",
            ]
        )
    )
    assert [c.type_code for c in message.header_comments] == ["C"]
    assert len(message.patients) == 2
    first = message.patients[0]
    assert [o.order.specimen_id for o in first.orders if o.order] == ["S1", "S2"]
    assert [r.result.value for r in first.orders[0].results] == ["13", "4"]
    assert [c.type_code for c in first.orders[0].results[0].comments] == ["C", "M"]
    assert message.problems == ["record 8 (R) has sequence number 3, expected 2"]
    assert len(message.results()) == 3


def test_message_without_parents_keeps_everything() -> None:
    message = Message.from_records(parse_records([b"R|1|^^^HB|13", b"O|1|S1"]))
    assert message.patients[0].patient is None
    assert message.patients[0].orders[0].order is None
    assert len(message.results()) == 1
    assert "the message has no H record" in message.problems
    assert "the message has no L record" in message.problems


@settings(max_examples=100, deadline=None)
@given(
    specimen=component_text,
    instrument_id=fields_strategy,
    codes=st.lists(st.lists(component_text, max_size=6).map(tuple), max_size=4),
    value=component_text,
    flags=st.lists(component_text, max_size=3),
    delimiters=delimiter_sets,
)
def test_records_made_with_create_survive_build_and_parse(
    specimen: str,
    instrument_id: Field,
    codes: list[tuple[str, ...]],
    value: str,
    flags: list[str],
    delimiters: Delimiters,
) -> None:
    tests = [UniversalTestId(code) for code in codes]
    made: list[Record] = [
        HeaderRecord.create(delimiters=delimiters),
        OrderRecord.create(specimen_id=specimen, instrument_specimen_id=instrument_id, tests=tests),
        ResultRecord.create(test=tests[0] if tests else UniversalTestId.local("X"), value=value),
        ResultRecord.create(test=UniversalTestId.local("Y"), value=value, abnormal_flags=flags),
    ]
    parsed = parse_records(build_records(made, encoding="utf-8"), encoding="utf-8")
    assert parsed == made
    order = parsed[1]
    assert isinstance(order, OrderRecord)
    assert order.instrument_specimen_id == instrument_id
    assert order.field(3) == ((specimen,),)
