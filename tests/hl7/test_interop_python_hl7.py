"""Interop with the outside peer python-hl7 (`hl7==0.4.5`).

python-hl7 reads what we build and we read what it builds, for ASCII and Latin-1 content.
Its known fault: it escapes `Ā` (U+0100) as `\\X100\\` (three hex digits) and
reads that back as two control characters. We send such letters as UTF-8 and refuse `\\X100\\`
with a structured error instead of inventing characters.
"""

from __future__ import annotations

import hl7
import pytest

from lab.hl7.codec.er7 import parse_message, parse_text
from lab.hl7.codec.errors import MessageStructureError
from lab.hl7.codec.oru import build_oru
from testkit.results import ten_results
from tests.hl7.samples import sample_bytes


def test_python_hl7_reads_our_oru() -> None:
    ours = build_oru(ten_results())
    theirs = hl7.parse(ours.to_er7())
    assert str(theirs.segment("MSH")[10]) == "LAB-000001"
    obx = theirs.segments("OBX")
    assert len(obx) == 10
    assert str(obx[0][3][0][0]) == "718-7" and str(obx[0][3][0][3]) == "HB"
    assert str(obx[0][5]) == "13.9"
    assert theirs.unescape(str(theirs.segment("PID")[5][0][0])) == "Sætre"


def test_python_hl7_escapes_are_read_by_us() -> None:
    theirs = hl7.parse("MSH|^~\\&|A|B|C|D|2026||ADT^A08|1|P|2.5.1\rPID|1||1||X\r")
    text = "Ødegård | og ^ & ~ \\ Bråten"
    escaped = theirs.escape(text)
    ours = parse_text(f"MSH|^~\\&|A|B|C|D|2026||ADT^A08|1|P|2.5.1\rNTE|1||{escaped}\r")
    nte = ours.segment("NTE")
    assert nte is not None and nte.text(3) == text


def test_we_read_python_hl7_messages_in_latin1() -> None:
    theirs = hl7.parse(sample_bytes("orm_o01_latin1.hl7").decode("latin-1"))
    wire = str(theirs).encode("latin-1")
    ours = parse_message(wire)
    pid = ours.segment("PID")
    assert pid is not None and pid.component(5, 1) == "Ødegård"
    assert ours.segment("OBR") is not None


def test_python_hl7_u0100_fault_and_ours() -> None:
    theirs = hl7.parse("MSH|^~\\&|A|B|C|D|2026||ADT^A08|1|P|2.5.1\rPID|1||1||X\r")
    escaped = theirs.escape("Āsa")
    assert escaped == "\\X100\\sa"  # three hex digits: not a byte sequence
    assert theirs.unescape(escaped) != "Āsa"  # it comes back as control characters
    with pytest.raises(MessageStructureError) as caught:
        parse_text(f"MSH|^~\\&|A|B|C|D|2026||ADT^A08|1|P|2.5.1\rPID|1||1||{escaped}\r")
    assert caught.value.problem.location() == "PID-5"
    ours = build_oru(ten_results()).to_er7().replace("Sætre", "Āsa")
    pid = parse_message(ours.encode()).segment("PID")
    assert pid is not None and pid.component(5, 1) == "Āsa"
