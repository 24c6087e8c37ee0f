"""ER7 codec: round trips (property), delimiters, escapes, character sets, broken structure."""

from __future__ import annotations

import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lab.hl7.codec.er7 import (
    NULL,
    Delimiters,
    FieldValue,
    Leaf,
    Message,
    Repeated,
    build_message,
    parse_message,
    parse_text,
)
from lab.hl7.codec.errors import (
    ErrorCode,
    Hl7Error,
    LocalProtocolError,
    MessageStructureError,
)

HEADER: dict[int, FieldValue] = {
    3: "LAB",
    4: "STOLAV",
    9: ("ORU", "R01", "ORU_R01"),
    10: "MSG-1",
    11: "P",
    12: "2.5.1",
}

Tree = list[list[list[Leaf]]]


def message_with(
    fields: dict[int, FieldValue],
    *,
    delimiters: Delimiters = Delimiters(),
    charset: str = "UNICODE UTF-8",
) -> Message:
    return build_message(
        [("MSH", {**HEADER, 18: charset}), ("NTE", {1: "1"}), ("PID", fields)],
        delimiters=delimiters,
    )


def as_value(tree: Tree) -> FieldValue:
    return Repeated(tuple(tuple(tuple(subs) for subs in rep) for rep in tree))


def normalised(tree: Tree) -> Tree:
    """What a field reads back as: trailing empty parts are not sent (v2.5.1 2.5.3)."""
    reps = []
    for rep in tree:
        comps = []
        for comp in rep:
            subs = list(comp)
            while len(subs) > 1 and subs[-1] == "":
                subs.pop()
            comps.append(subs)
        while len(comps) > 1 and comps[-1] == [""]:
            comps.pop()
        reps.append(comps)
    while reps and reps[-1] == [[""]]:
        reps.pop()
    return reps


def leaves(alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[Leaf]:
    return st.one_of(st.just(NULL), st.just(""), st.just('""'), st.text(alphabet, max_size=12))


def trees(alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[Tree]:
    return st.lists(
        st.lists(st.lists(leaves(alphabet), min_size=1, max_size=3), min_size=1, max_size=3),
        max_size=3,
    )


ANY_CHARACTER = st.characters(codec="utf-8")  # all of Unicode but surrogates
SAMI_AND_SPECIALS = st.sampled_from(list('æøåÆØÅšČčŋŊđĐŧŦžŽĀā|^~\\&"\r\n\t\x0b\x1c#'))
LATIN_1 = st.characters(max_codepoint=0xFF)
DELIMITER_CHARS = [c for c in string.punctuation if c != '"']


@settings(max_examples=300, deadline=None)
@given(fields=st.lists(trees(st.one_of(ANY_CHARACTER, SAMI_AND_SPECIALS)), min_size=1, max_size=5))
def test_round_trip_utf8_any_text(fields: list[Tree]) -> None:
    message = message_with({i + 3: as_value(tree) for i, tree in enumerate(fields)})
    parsed = parse_message(message.encode())
    pid = parsed.segment("PID")
    assert pid is not None
    for i, tree in enumerate(fields):
        assert pid.field(i + 3).tree() == normalised(tree)


@settings(max_examples=200, deadline=None)
@example(chars=["!", "#", "$", ".", "%"], tree=[[["\n", "\n"]]])  # "." as escape: no \.br\
@example(chars=["!", ".", "#", "$", "%"], tree=[[["\n"]]])  # "." as component delimiter
@given(
    chars=st.lists(st.sampled_from(DELIMITER_CHARS), min_size=5, max_size=5, unique=True),
    tree=trees(st.one_of(st.sampled_from(DELIMITER_CHARS), st.characters(codec="utf-8"))),
)
def test_round_trip_any_delimiters(chars: list[str], tree: Tree) -> None:
    delimiters = Delimiters(*chars)
    message = message_with({5: as_value(tree)}, delimiters=delimiters)
    wire = message.encode()
    assert wire.startswith(
        b"MSH" + delimiters.field.encode() + delimiters.encoding_characters.encode()
    )
    parsed = parse_message(wire)
    assert parsed.delimiters == delimiters
    assert parsed.message_type == ("ORU", "R01", "ORU_R01")
    pid = parsed.segment("PID")
    assert pid is not None
    assert pid.field(5).tree() == normalised(tree)


@settings(max_examples=200, deadline=None)
@given(
    chars=st.lists(st.sampled_from(DELIMITER_CHARS), min_size=5, max_size=5, unique=True),
    tree=trees(st.one_of(st.sampled_from(DELIMITER_CHARS), st.characters(codec="utf-8"))),
)
def test_each_value_reads_as_its_place_in_the_tree(chars: list[str], tree: Tree) -> None:
    """`value` and `component` at every place (and past the end, where they read ""), each read
    twice: the field is split at its first read and read from the parts after."""
    delimiters = Delimiters(*chars)
    parsed = parse_message(message_with({5: as_value(tree)}, delimiters=delimiters).encode())
    pid = parsed.segment("PID")
    assert pid is not None
    expected = normalised(tree)
    for _ in range(2):
        for r in range(1, len(expected) + 2):
            for c in range(1, 5):
                for s in range(1, 5):
                    try:
                        leaf = expected[r - 1][c - 1][s - 1]
                    except IndexError:
                        leaf = ""
                    assert pid.value(5, c, s, r) == leaf
                    assert pid.field(5).value(c, s, r) == leaf
                    assert pid.component(5, c, s, r) == ("" if leaf is NULL else leaf)


@settings(max_examples=200, deadline=None)
@given(tree=trees(LATIN_1))
def test_round_trip_latin1(tree: Tree) -> None:
    message = message_with({5: as_value(tree)}, charset="8859/1")
    wire = message.encode()
    parsed = parse_message(wire)
    assert parsed.charset == "8859/1"
    pid = parsed.segment("PID")
    assert pid is not None
    assert pid.field(5).tree() == normalised(tree)


def test_latin1_bytes_are_latin1_on_the_wire() -> None:
    wire = message_with({5: ("Sætre", "Åse")}, charset="8859/1").encode()
    assert b"S\xe6tre^\xc5se" in wire


@pytest.mark.parametrize("text", ["Āsa", "Šiellat", "Ŋuolga", "đ", "ŧ", "ž", "č", "€"])
def test_latin1_refuses_what_it_cannot_carry(text: str) -> None:
    message = message_with({5: text}, charset="8859/1")
    with pytest.raises(LocalProtocolError, match=r"U\+[0-9A-F]{4}.*PID.*8859/1"):
        message.encode()


def test_null_and_empty_are_different() -> None:
    message = message_with({5: ("Strøm", "Āsa", NULL), 7: "", 8: NULL, 9: '""'})
    wire = message.encode()
    assert b'|Str\xc3\xb8m^\xc4\x80sa^""||' in wire
    pid = parse_message(wire).segment("PID")
    assert pid is not None
    assert pid.value(5, 3) is NULL
    assert pid.value(7) == "" and not pid.is_null(7)
    assert pid.value(8) is NULL and pid.is_null(8) and pid.field(8).is_null
    assert pid.value(9) == '""'  # the text of two quotes, sent as \X22\"


def test_msh_positions() -> None:
    msh = message_with({}).header
    assert msh.value(1) == "|"
    assert msh.value(2) == "^~\\&"
    assert msh.text(3) == "LAB"
    assert msh.component(9, 2) == "R01"
    assert msh.text(12) == "2.5.1"


def test_lookups() -> None:
    message = build_message(
        [("MSH", HEADER), ("PID", {3: "1"}), ("OBX", {1: "1"}), ("OBX", {1: "2"})]
    )
    assert message.segment("PID") is not None
    assert message.segment("ZZZ") is None
    assert [obx.text(1) for obx in message.segments_named("OBX")] == ["1", "2"]
    assert [obx.sequence for obx in message.segments_named("OBX")] == [1, 2]
    assert message.control_id == "MSG-1"


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        ("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f", "a|b^c&d~e\\f"),
        ("linje 1\\.br\\linje 2", "linje 1\nlinje 2"),
        ("\\H\\viktig\\N\\", "viktig"),
        ("a\\.sp 2\\b", "a\n\nb"),
        ("\\XC3A6C3B8C3A5\\", "æøå"),
        ("\\X0D\\", "\r"),
    ],
)
def test_escapes_read(wire: str, text: str) -> None:
    message = parse_text(f"MSH|^~\\&|A|B|||||ADT^A08|1|P|2.5.1\rNTE|1||{wire}\r")
    nte = message.segment("NTE")
    assert nte is not None
    assert nte.text(3) == text


def test_line_breaks_go_out_as_br() -> None:
    er7 = message_with({5: "første linje\nandre linje\rCR"}).to_er7()
    assert "første linje\\.br\\andre linje\\X0D\\CR" in er7


def test_lenient_line_endings() -> None:
    text = "MSH|^~\\&|A|B|||||ADT^A08|1|P|2.5.1\r\nPID|1||123\nPV1|1|O\n"
    message = parse_text(text)
    assert [s.name for s in message] == ["MSH", "PID", "PV1"]
    assert message.to_er7().count("\r") == 3 and "\n" not in message.to_er7()


def test_partner_default_charset_when_msh18_is_empty() -> None:
    wire = "MSH|^~\\&|A|B|||||ADT^A08|1|P|2.5.1\rPID|1||1||Ødegård\r".encode("latin-1")
    with pytest.raises(MessageStructureError) as caught:
        parse_message(wire)  # the default is UTF-8: Latin-1 bytes are not valid there
    assert caught.value.problem.location() == "PID-5"
    parsed = parse_message(wire, default_charset="8859/1")
    pid = parsed.segment("PID")
    assert pid is not None and pid.text(5) == "Ødegård"


BROKEN = [
    (b"PID|1||123\r", "MSH", None),
    (b"MSH|^~\\&|A\rpid|1\r", "MSH", None),
    (b"MSH|^~\\&|A\rP1|1\r", "MSH", None),
    (b"MSH|^~\\&|A\rPIDX|1\r", "MSH", None),
    (b"MSH|^~\\&|A\rPID|1||x\\F\r", "PID", 3),
    (b"MSH|^~\\&|A\rPID|1||\\X1\\\r", "PID", 3),
    (b"MSH|^~\\&|A\rPID|1||\\Cxxyy\\\r", "PID", 3),
    (b"MSH|^~\\&|A\rPID|1||\\Q\\\r", "PID", 3),
    (b"MSH|^^\\&|A\r", "MSH", 2),
    (b"MSH|^~|A\r", "MSH", 2),
    (b"MSH|^~\\&|A|B|C|D|E||ADT^A01|1|P|2.5.1||||||KLINGON\r", "MSH", 18),
    (b"MSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\r", "MSH", None),
    (b"MSH|^~\\&|A\rPID|1||\xff\xfe\r", "PID", 3),
]


@pytest.mark.parametrize(("wire", "segment", "position"), BROKEN)
def test_broken_structure_raises_a_structured_error(
    wire: bytes, segment: str, position: int | None
) -> None:
    with pytest.raises(MessageStructureError) as caught:
        parse_message(wire)
    problem = caught.value.problem
    assert problem.segment_id == segment
    assert problem.field_position == position
    assert problem.code in (
        ErrorCode.SEGMENT_SEQUENCE_ERROR,
        ErrorCode.DATA_TYPE_ERROR,
        ErrorCode.TABLE_VALUE_NOT_FOUND,
    )
    assert problem.message


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_corruption_raises_only_hl7_errors(data: st.DataObject) -> None:
    """Any damage to the bytes either still parses or raises an Hl7Error; nothing else."""
    wire = bytearray(message_with({5: ("Sætre", "Åse\\|"), 8: NULL, 13: "a~b^c&d"}).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(wire) - 1))
        action = data.draw(st.sampled_from(["replace", "delete", "insert"]))
        byte = data.draw(st.integers(0, 255))
        if action == "replace":
            wire[index] = byte
        elif action == "delete" and len(wire) > 1:
            del wire[index]
        else:
            wire.insert(index, byte)
    try:
        parsed = parse_message(bytes(wire))
    except Hl7Error:
        return
    for segment in parsed:  # whatever parsed must also be readable everywhere
        for position in range(1, len(segment) + 1):
            if not (segment.name == "MSH" and position <= 2):
                segment.field(position).tree()


def test_build_refuses_bad_input() -> None:
    with pytest.raises(LocalProtocolError):
        build_message([("PID", {3: "1"})])
    with pytest.raises(LocalProtocolError):
        build_message([("MSH", HEADER), ("pid", {})])
    with pytest.raises(LocalProtocolError):
        build_message([("MSH", {2: "x"})])
    with pytest.raises(LocalProtocolError):
        build_message([("MSH", HEADER)], delimiters=Delimiters("|", "^", "^", "\\", "&"))
