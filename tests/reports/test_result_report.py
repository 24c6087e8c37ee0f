from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.reports import render_result_report
from lab.reports.result_report import TABLE_COMMENT_LIMIT, build_result_report
from lab.reports.types import (
    MAX_NAME_LENGTH,
    MAX_TEST_NAME_LENGTH,
    ReportInputError,
    ResultLine,
)

from .builders import SAMI_FAMILY, SAMI_GIVEN, page_texts, read_pdf, result_lines, result_report
from .test_fonts import NAME_LETTERS


def fonts_of(pdf: bytes, page: int = 0) -> list[tuple[str, str]]:
    """(text, font name) of every string drawn on a page."""
    drawn: list[tuple[str, str]] = []

    def visit(text: str, _cm: Any, _tm: Any, font: Any, _size: Any) -> None:
        if text.strip() and font is not None:
            drawn.append((text.strip(), str(font["/BaseFont"])))

    read_pdf(pdf).pages[page].extract_text(visitor_text=visit)
    return drawn


def test_report_carries_patient_order_and_results_in_bokmal() -> None:
    pdf = render_result_report(result_report())
    (text,) = page_texts(pdf)
    for expected in (
        "St. Olavs hospital – Avdeling for medisinsk biokjemi",
        "Postboks 3250 Torgarden",
        "Ærøy-Østby, Åse Kristin",
        "050187 12345",
        "05.01.1987",
        "Kvinne",
        "HP-2026-0042",
        "Ola Normann",
        "Medisinsk poliklinikk",
        "27.11.2026 08:15",  # collected, Oslo time
        "27.11.2026 09:02",  # received
        "13,50",
        "11,7–15,3",
        "5,9",
        "HH",
        "<5",
        "< 5",
        "Foreløpig",
        "Under arbeid",
        "Hemolytisk prøve: tolkes med forsiktighet (K+ < 6 & >5)",
        "Godkjent av Kari Nordmann 27.11.2026 09:50",
        "Utskrevet 27.11.2026 10:00",
        "Side 1 av 1",
    ):
        assert expected in text, expected
    assert "13.50" not in text
    assert "KORRIGERT SVAR" not in text


def test_english_report_uses_a_decimal_point() -> None:
    (text,) = page_texts(render_result_report(result_report(language="en")))
    for expected in ("13.50", "11.7–15.3", "Page 1 of 1", "Verified by Kari Nordmann at", "Female"):
        assert expected in text, expected
    assert "13,50" not in text


def test_flags_are_bold() -> None:
    drawn = fonts_of(render_result_report(result_report()))
    flags = [font for text, font in drawn if text == "HH"]
    assert flags and all("Bold" in font for font in flags)
    plain = [font for text, font in drawn if text == "Hemoglobin"]
    assert plain and all("Bold" not in font for font in plain)


def test_corrected_result_puts_a_banner_on_every_page() -> None:
    report = result_report(results=result_lines(120, corrected=True))
    texts = page_texts(render_result_report(report))
    assert len(texts) > 1
    assert all("KORRIGERT SVAR" in text for text in texts)
    assert "Korrigert" in "".join(texts)


def test_unverified_report_says_so() -> None:
    (text,) = page_texts(render_result_report(result_report(verified=False)))
    assert "Ikke godkjent – foreløpig svar" in text
    assert "Godkjent av" not in text


@pytest.mark.parametrize("count", [4, 60, 200])
def test_page_numbers_count_the_pages(count: int) -> None:
    pdf, layout = build_result_report(result_report(results=result_lines(count)))
    texts = page_texts(pdf)
    assert layout.page_count == len(texts)
    if count == 200:
        assert len(texts) >= 4
    for number, text in enumerate(texts, start=1):
        assert f"Side {number} av {len(texts)}" in text
        # A loose page still says whose results it holds.
        assert "Ærøy-Østby, Åse Kristin" in text and "050187 12345" in text
    joined = "".join(texts)
    for index in range(4, count):
        assert f"Analyse {index:03d}" in joined


def test_long_comment_moves_under_the_table_and_can_span_pages() -> None:
    comment = "Prøven er lipemisk og må tolkes med forsiktighet. " * 400
    results = (
        *result_lines(2),
        ResultLine(test_name="Triglyserider", value=Decimal("12.3"), comment=comment),
    )
    pdf, layout = build_result_report(result_report(results=results))
    assert len(comment) > TABLE_COMMENT_LIMIT
    assert layout.long_comment_count == 1
    texts = page_texts(pdf)
    assert len(texts) > 1
    assert "Kommentar: [1]" in texts[0] and "Kommentarer" in "".join(texts)


def test_sami_names_print_as_they_are() -> None:
    (text,) = page_texts(
        render_result_report(result_report(family=SAMI_FAMILY, given="Máret Ŧiŧi"))
    )
    assert "Ŋuolja-Sárá Åsbø, Máret Ŧiŧi" in text


def test_same_report_gives_the_same_bytes() -> None:
    assert render_result_report(result_report()) == render_result_report(result_report())


def test_empty_report_renders() -> None:
    (text,) = page_texts(render_result_report(result_report(results=())))
    assert "Ingen resultater" in text


def test_bad_input_is_refused_at_construction() -> None:
    with pytest.raises(ReportInputError):
        ResultLine(test_name="HB", value=Decimal("NaN"))
    with pytest.raises(ReportInputError):
        ResultLine(test_name="HB", value="Positiv", comparator="<")
    with pytest.raises(ReportInputError):
        ResultLine(test_name=" ", value=Decimal(1))
    with pytest.raises(ReportInputError):
        ResultLine(test_name="K" * (MAX_TEST_NAME_LENGTH + 1), value=Decimal(1))
    ResultLine(test_name="K" * MAX_TEST_NAME_LENGTH, value=Decimal(1))
    with pytest.raises(ReportInputError):
        result_report(family="Å" * (MAX_NAME_LENGTH + 1))


free_text = st.text(max_size=300)
marked_up = st.text(alphabet="<>&\"'/b" + NAME_LETTERS, max_size=300)
# Names and test names as long as the report takes them (a longer one is refused: tested above).
name_text = st.text(max_size=MAX_NAME_LENGTH)
test_name_text = st.one_of(
    st.text(alphabet="<>&\"'/b" + NAME_LETTERS, max_size=MAX_TEST_NAME_LENGTH),
    st.text(max_size=MAX_TEST_NAME_LENGTH),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    family=st.one_of(
        st.text(alphabet=NAME_LETTERS, min_size=1, max_size=MAX_NAME_LENGTH), name_text
    ).filter(lambda name: bool(name.strip())),
    given_name=st.one_of(st.just(SAMI_GIVEN), name_text),
    test_name=test_name_text.filter(lambda name: bool(name.strip())),
    comment=st.one_of(st.none(), marked_up, free_text, st.text(max_size=3000)),
    value=st.one_of(
        st.none(),
        st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-1e6, max_value=1e6),
        free_text,
    ),
    language=st.sampled_from(["nb", "en"]),
)
def test_any_text_renders(
    family: str, given_name: str, test_name: str, comment: str | None, value: Any, language: Any
) -> None:
    line = ResultLine(
        test_name=test_name, value=value, comment=comment, flag="H", status="corrected"
    )
    report = result_report(
        results=(line, *result_lines(3)), family=family, given=given_name, language=language
    )
    pdf, layout = build_result_report(report)
    texts = page_texts(pdf)
    assert len(texts) == layout.page_count
    assert f"{'Side' if language == 'nb' else 'Page'} 1 " in texts[0]


def test_a_corrected_result_names_the_value_it_replaced_and_why() -> None:
    corrected = ResultLine(
        test_name="Kalium",
        value=Decimal("4.1"),
        unit="mmol/L",
        status="corrected",
        corrected_from=Decimal("6.9"),
        correction_reason="hemolysert prøve, ny prøve tatt",
    )
    (text,) = page_texts(render_result_report(result_report(results=(corrected,))))
    assert "Korrigert fra 6,9 mmol/L. Årsak: hemolysert prøve, ny prøve tatt" in text
    (english,) = page_texts(
        render_result_report(result_report(results=(corrected,), language="en"))
    )
    assert "Corrected from 6.9 mmol/L. Reason: hemolysert prøve, ny prøve tatt" in english
