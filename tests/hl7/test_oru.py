"""ORU^R01 (IHE LTW LAB-3): content, table values, hl7apy STRICT, refusals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.hl7.codec.er7 import parse_message
from lab.hl7.codec.errors import LocalProtocolError
from lab.hl7.codec.oru import build_oru
from lab.hl7.codec.types import (
    AbnormalFlag,
    CodedValue,
    ObservationStatus,
    ResultStatus,
    ValueType,
)
from lab.hl7.codec.validation import validate_strict
from testkit.results import AANTE, observation, report, ten_results

TABLE_0085 = set("CDFINOPRSUWX")
TABLE_0078 = {
    "<",
    ">",
    "A",
    "AA",
    "B",
    "D",
    "H",
    "HH",
    "I",
    "L",
    "LL",
    "MS",
    "N",
    "R",
    "S",
    "U",
    "VS",
    "W",
}
TABLE_0123 = set("ACFIOPRSXYZ")


def test_ten_results_content_and_strict() -> None:
    message = build_oru(ten_results())
    validate_strict(message)
    parsed = parse_message(message.encode())
    msh = parsed.header
    assert parsed.message_type == ("ORU", "R01", "ORU_R01")
    assert (msh.text(10), msh.text(12), msh.text(18)) == ("LAB-000001", "2.5.1", "UNICODE UTF-8")
    obr = parsed.segment("OBR")
    assert obr is not None and obr.text(25) == "F" and obr.text(22) == "20261127100100+0000"
    assert obr.field(2).wire == "HMN-ORD-1001^EPIC" and obr.field(3).wire == "26-000123^LAB"
    obxs = parsed.segments_named("OBX")
    assert len(obxs) == 10
    first = obxs[0]
    assert first.field(3).wire == "718-7^Hemoglobin^LN^HB^Hemoglobin^L"
    assert (first.text(2), first.text(5), first.field(6).wire) == ("NM", "13.9", "g/dL^g/dL^UCUM")
    assert (first.text(7), first.text(8), first.text(11)) == ("1-100", "N", "F")
    assert first.text(14) == "20261127080000+0100" and first.text(19) == "20261127084000+0100"
    assert first.field(16).wire == "5551212^Ødegård^Tove^^^^^^HPR"
    nte = parsed.segment("NTE")
    assert nte is not None and nte.text(3) == "Prøven er lett hemolysert."


def test_corrected_cancelled_coded_and_text_results_pass_strict() -> None:
    observations = (
        observation(
            "CRP",
            Decimal("250"),
            status=ObservationStatus.CORRECTED,
            flags=(AbnormalFlag.HIGH, AbnormalFlag.CRITICAL_HIGH),
            comments=("Korrigert: feil prøve\nbyttet.",),
        ),
        observation(
            "K",
            None,
            status=ObservationStatus.CANNOT_BE_OBTAINED,
            comments=("Hemolysert prøve, analysen er kansellert.",),
        ),
        observation(
            "HB",
            CodedValue(code="POS", text="Positiv", coding_system="L"),
            value_type=ValueType.CODED,
        ),
        observation("NA", "Se kommentar | ^ & ~ \\ Šiellat", value_type=ValueType.STRING),
        observation("KREA", None, status=ObservationStatus.DELETED),
    )
    message = build_oru(report(observations, status=ResultStatus.CORRECTED, patient=AANTE))
    validate_strict(message)
    parsed = parse_message(message.encode())
    obx = parsed.segments_named("OBX")
    assert [o.text(11) for o in obx] == ["C", "X", "F", "F", "D"]
    assert obx[0].field(8).wire == "H~HH"
    assert obx[1].text(2) == "" and obx[1].text(5) == ""  # cancelled: no value
    assert obx[2].text(2) == "CWE" and obx[2].field(5).wire == "POS^Positiv^L"
    assert obx[3].text(5) == "Se kommentar | ^ & ~ \\ Šiellat"
    notes = [n.text(3) for n in parsed.segments_named("NTE")]
    assert "Korrigert: feil prøve\nbyttet." in notes
    pid = parsed.segment("PID")
    assert pid is not None and pid.component(5, 1) == "Čáhppeš-Ŋuolga"
    for segment in obx:
        assert set(segment.text(11)) <= TABLE_0085
        for flag in segment.field(8).repetitions():
            assert flag.text() in TABLE_0078
    obr = parsed.segment("OBR")
    assert obr is not None and obr.text(25) in TABLE_0123


def test_cancelled_order() -> None:
    cancelled = report(
        (observation("HB", None, status=ObservationStatus.CANNOT_BE_OBTAINED),),
        status=ResultStatus.CANCELLED,
    )
    message = build_oru(cancelled)
    validate_strict(message)
    obr = message.segment("OBR")
    assert obr is not None and obr.text(25) == "X"


@pytest.mark.parametrize(
    "bad",
    [
        observation("HB", None),  # final without value
        observation("HB", Decimal("1"), status=ObservationStatus.CANNOT_BE_OBTAINED),
        observation("HB", Decimal("NaN")),
        observation("HB", "13,9"),  # NM needs a Decimal, never a decimal comma
        observation("HB", Decimal("1"), value_type=ValueType.CODED),
    ],
)
def test_refuses_what_hl7_cannot_say(bad: object) -> None:
    with pytest.raises(LocalProtocolError):
        build_oru(report((bad,)))  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    value=st.decimals(
        allow_nan=False, allow_infinity=False, places=3, min_value=-(10**6), max_value=10**6
    ),
    text=st.text(st.characters(codec="utf-8"), max_size=30),
)
def test_any_value_and_comment_round_trips(value: Decimal, text: str) -> None:
    result = observation("GLUK", value, comments=(text,) if text else ())
    parsed = parse_message(build_oru(report((result,))).encode())
    obx = parsed.segment("OBX")
    assert obx is not None and Decimal(obx.text(5)) == value
    assert "E" not in obx.text(5).upper()
    if text:
        nte = parsed.segments_named("NTE")[-1]
        assert nte.text(3) == text
