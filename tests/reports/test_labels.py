from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth

from lab.reports import LABEL_STOCKS, render_labels
from lab.reports.fonts import load_fonts
from lab.reports.labels import (
    LabelLayout,
    layout_label,
    render_labels_with_layout,
)
from lab.reports.types import LabelDoesNotFitError, LabelStock, ReportInputError

from .builders import SAMI_FAMILY, SAMI_GIVEN, page_texts, read_pdf, specimen_label
from .code128_reader import decode_bars, filled_rectangles
from .test_fonts import NAME_LETTERS

STOCKS = list(LABEL_STOCKS.values())
DOT_MM = 25.4 / 203
QUIET_ZONE = 10  # modules each side, ISO/IEC 15417


def check_layout_fits(layout: LabelLayout) -> None:
    """Everything the renderer placed lies inside the label, measured with stringWidth."""
    stock = layout.stock
    margin = stock.margin_mm * mm
    assert layout.page_width == pytest.approx(stock.width_mm * mm)
    for placed in layout.texts:
        measured = stringWidth(placed.text, placed.font_name, placed.font_size)
        assert placed.width == pytest.approx(measured, abs=1e-6)
        assert placed.box_left >= margin - 1e-6
        assert placed.box_right <= layout.page_width - margin + 1e-6
        assert placed.box_left - 1e-6 <= placed.x
        assert placed.x + placed.width <= placed.box_right + 1e-6, placed
        assert placed.bottom >= margin - 1e-6, placed
        assert placed.top <= layout.page_height - margin + 1e-6, placed
        assert placed.font_size >= min(stock.min_font_size_pt, stock.font_size_pt)
    barcode = layout.barcode
    # Nothing is printed in the barcode's band, so its quiet zones are really blank.
    for placed in layout.texts:
        assert placed.bottom >= barcode.y + barcode.bar_height or placed.top <= barcode.y
    for block in layout.blocks:
        assert block.y >= barcode.y + barcode.bar_height
    # Lines do not overlap: two strings overlap in height only if they share a line and then
    # they do not overlap in width (the priority mark sits inside its block, not the name).
    for first in layout.texts:
        for second in layout.texts:
            if first is second or first.role == "priority" or second.role == "priority":
                continue
            if first.bottom < second.top and second.bottom < first.top:
                assert first.baseline == second.baseline, (first, second)
                assert (
                    first.x + first.width <= second.x + 1e-6
                    or second.x + second.width <= first.x + 1e-6
                )


@pytest.mark.parametrize("stock", STOCKS, ids=lambda stock: stock.name)
def test_each_label_is_one_page_the_size_of_the_stock(stock: LabelStock) -> None:
    labels = [specimen_label(), specimen_label(accession_number="2611270002", priority="stat")]
    reader = read_pdf(render_labels(labels, stock=stock))
    assert len(reader.pages) == 2
    for page in reader.pages:
        assert float(page.mediabox.width) == pytest.approx(stock.width_mm * mm, abs=0.01)
        assert float(page.mediabox.height) == pytest.approx(stock.height_mm * mm, abs=0.01)


@pytest.mark.parametrize("stock", STOCKS, ids=lambda stock: stock.name)
def test_label_text_carries_accession_patient_container_tests(stock: LabelStock) -> None:
    label = specimen_label(priority="stat")
    pdf, (layout,) = render_labels_with_layout([label], stock=stock)
    (text,) = page_texts(pdf)
    for expected in (
        "2611270001",
        "Ærøy-Østby, Åse Kristin",
        "050187 12345",
        "05.01.1987",
        "EDTA",
        "HB LPK TPK",
        "27.11.2026 08:15",  # collected 07:15 UTC, shown in Oslo time
        "ØH",
    ):
        assert expected in text, expected
    check_layout_fits(layout)
    assert not any(placed.truncated for placed in layout.texts)


def test_sami_letters_are_printed_as_they_are() -> None:
    label = specimen_label(family=SAMI_FAMILY, given="Máret Ŧiŧi")
    (text,) = page_texts(render_labels([label], stock=LABEL_STOCKS["rack-4x2in"]))
    assert "Ŋuolja-Sárá Åsbø, Máret Ŧiŧi" in text


def test_without_collection_time_or_priority_nothing_is_invented() -> None:
    pdf, (layout,) = render_labels_with_layout(
        [specimen_label(collected=False)], stock=LABEL_STOCKS["tube-50x25mm"]
    )
    assert layout.text("collected") is None and layout.text("priority") is None
    assert not layout.blocks
    assert "ØH" not in page_texts(pdf)[0]


def test_stat_is_an_inverted_block_and_asap_an_outlined_one() -> None:
    stock = LABEL_STOCKS["tube-50x25mm"]
    stat = layout_label(specimen_label(priority="stat"), stock=stock)
    (block,) = stat.blocks
    mark = stat.text("priority")
    assert block.filled and mark is not None and mark.color == "white" and mark.text == "ØH"
    assert block.x <= mark.x and mark.x + mark.width <= block.x + block.width
    name = stat.text("name")
    assert name is not None and name.x + name.width < block.x
    asap = layout_label(specimen_label(priority="asap"), stock=stock)
    assert not asap.blocks[0].filled and asap.text("priority").color == "black"  # type: ignore[union-attr]


def test_many_tests_are_counted_not_cut() -> None:
    tests = tuple(f"T{index:02d}" for index in range(40))
    layout = layout_label(specimen_label(tests=tests), stock=LABEL_STOCKS["tube-50x25mm"])
    shown = layout.text("tests")
    assert shown is not None
    codes, _, rest = shown.text.rpartition(" +")
    assert int(rest) == 40 - len(codes.split())
    check_layout_fits(layout)


@pytest.mark.parametrize("stock", STOCKS, ids=lambda stock: stock.name)
@pytest.mark.parametrize("accession", ["2611270001", "A26-000123", "X9", "1234567890123456"])
def test_barcode_in_the_pdf_decodes_to_the_accession_number(
    stock: LabelStock, accession: str
) -> None:
    pdf, (layout,) = render_labels_with_layout(
        [specimen_label(accession_number=accession, priority="stat")], stock=stock
    )
    barcode = layout.barcode
    assert barcode.symbol.value == accession
    assert barcode.symbol.validated == accession  # reportlab dropped nothing
    page = read_pdf(pdf).pages[0]
    bars = [
        bar
        for bar in filled_rectangles(page)
        if bar.y == pytest.approx(barcode.y, abs=0.01)
        and bar.height == pytest.approx(barcode.bar_height, abs=0.01)
    ]
    assert decode_bars(bars, barcode.module) == accession
    # The bars drawn are where the layout says, with blank quiet zones beside them.
    left = min(bar.x for bar in bars)
    right = max(bar.x + bar.width for bar in bars)
    assert left == pytest.approx(barcode.bars_x, abs=0.01)
    assert right == pytest.approx(barcode.bars_x + barcode.bars_width, abs=0.01)
    assert left - QUIET_ZONE * barcode.module >= -0.01
    assert right + QUIET_ZONE * barcode.module <= stock.width_mm * mm + 0.01


@pytest.mark.parametrize("stock", STOCKS, ids=lambda stock: stock.name)
def test_barcode_geometry_suits_a_203_dpi_printer(stock: LabelStock) -> None:
    layout = layout_label(specimen_label(accession_number="A26-000123"), stock=stock)
    barcode = layout.barcode
    module_mm = barcode.module / mm
    assert barcode.module_dots in (2, 3, 4)
    assert module_mm == pytest.approx(barcode.module_dots * DOT_MM)
    assert module_mm >= 0.25 - 1e-9
    # Bars start on the printer's dot grid, so every bar is printed a whole number of dots.
    start_in_dots = barcode.bars_x / mm / DOT_MM
    assert start_in_dots == pytest.approx(round(start_in_dots), abs=1e-6)
    assert barcode.quiet_zone == pytest.approx(QUIET_ZONE * barcode.module)
    assert barcode.symbol.lquiet == barcode.symbol.rquiet == barcode.quiet_zone
    assert barcode.symbol.width == pytest.approx(barcode.bars_width + 2 * barcode.quiet_zone)
    assert barcode.x >= 0 and barcode.x + barcode.width <= stock.width_mm * mm + 1e-6
    margin = stock.margin_mm * mm
    assert margin - 1e-6 <= barcode.bars_x
    assert barcode.bars_x + barcode.bars_width <= stock.width_mm * mm - margin + 1e-6
    assert barcode.bar_height == pytest.approx(stock.barcode_height_mm * mm)


def test_module_narrows_to_two_dots_before_giving_up() -> None:
    stock = LABEL_STOCKS["tube-50x25mm"]
    assert (
        layout_label(specimen_label(accession_number="2611270001"), stock=stock).barcode.module_dots
        == 3
    )
    # 12 letters: (12 + 2) x 11 + 13 = 167 modules, 187 with quiet zones: 46.8 mm at 2 dots,
    # 70.1 mm at 3; 14 letters need 209 modules, 52.3 mm, more than the label.
    long = layout_label(specimen_label(accession_number="ABCDEFGHIJKL"), stock=stock)
    assert long.barcode.module_dots == 2
    with pytest.raises(LabelDoesNotFitError):
        layout_label(specimen_label(accession_number="ABCDEFGHIJKLMN"), stock=stock)


@pytest.mark.parametrize("accession", ["", "26112 70001", "2611270001Ø", "A\x00B", "X" * 33])
def test_accession_numbers_a_barcode_cannot_carry_are_refused(accession: str) -> None:
    with pytest.raises(ReportInputError):
        specimen_label(accession_number=accession)


def test_no_labels_is_an_error_and_a_tiny_stock_is_refused() -> None:
    with pytest.raises(ReportInputError):
        render_labels([], stock=LABEL_STOCKS["tube-50x25mm"])
    tiny = LabelStock(
        name="tiny", width_mm=50, height_mm=12, margin_mm=1, barcode_height_mm=7, font_size_pt=6
    )
    with pytest.raises(LabelDoesNotFitError):
        layout_label(specimen_label(), stock=tiny)


def test_same_labels_give_the_same_bytes() -> None:
    stock = LABEL_STOCKS["clsi-2x1in"]
    assert render_labels([specimen_label()], stock=stock) == render_labels(
        [specimen_label()], stock=stock
    )


def test_vera_fallback_renders_sami_names(tmp_path_factory: pytest.TempPathFactory) -> None:
    vera = load_fonts((tmp_path_factory.mktemp("empty"),))
    label = specimen_label(family=SAMI_FAMILY, given="Ŧiŧi")
    pdf, (layout,) = render_labels_with_layout(
        [label], stock=LABEL_STOCKS["rack-4x2in"], fonts=vera
    )
    assert "Nuolja-Sárá Åsbø, Titi" in page_texts(pdf)[0]
    check_layout_fits(layout)


names = st.one_of(
    st.text(alphabet=NAME_LETTERS, min_size=1, max_size=200),
    st.text(min_size=1, max_size=200),  # anything Unicode has, control characters included
).filter(lambda name: bool(name.strip()))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    family=names,
    given_name=st.one_of(st.just(""), names),
    container=st.text(min_size=1, max_size=100).filter(lambda text: bool(text.strip())),
    tests=st.lists(st.text(alphabet=NAME_LETTERS.upper(), max_size=12), max_size=30),
    priority=st.sampled_from(["routine", "asap", "stat"]),
    stock=st.sampled_from(STOCKS),
)
def test_any_name_renders_and_stays_inside_the_label(
    family: str, given_name: str, container: str, tests: list[str], priority: str, stock: LabelStock
) -> None:
    label = specimen_label(family=family, given=given_name, tests=tuple(tests), priority=priority)
    label = type(label)(
        accession_number=label.accession_number,
        patient=label.patient,
        container=container,
        tests=label.tests,
        priority=label.priority,
        collected_at=label.collected_at,
    )
    pdf, (layout,) = render_labels_with_layout([label], stock=stock)
    check_layout_fits(layout)
    assert "2611270001" in page_texts(pdf)[0]
    name = layout.text("name")
    assert name is not None
    if not name.truncated:
        assert name.font_size >= stock.min_font_size_pt


def test_a_very_long_sami_name_is_truncated_with_an_ellipsis() -> None:
    stock = LABEL_STOCKS["tube-50x25mm"]
    layout = layout_label(specimen_label(family=SAMI_FAMILY * 4, given=SAMI_GIVEN), stock=stock)
    name = layout.text("name")
    assert name is not None and name.truncated and name.text.endswith("…")
    assert name.text.startswith("Ŋuolja-Sárá Åsbø")
    assert name.font_size == stock.min_font_size_pt
    check_layout_fits(layout)


@settings(max_examples=40, deadline=None)
@given(
    accession=st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=16
    ),
    stock=st.sampled_from(STOCKS),
)
def test_any_printable_ascii_accession_scans_back_or_is_refused(
    accession: str, stock: LabelStock
) -> None:
    try:
        pdf, (layout,) = render_labels_with_layout(
            [specimen_label(accession_number=accession)], stock=stock
        )
    except LabelDoesNotFitError:
        # Refused only when even a 2-dot module cannot fit: start, check and stop symbols
        # plus one per character (digit pairs share one) are more than the label holds.
        assert len(accession) > 7
        return
    barcode = layout.barcode
    bars = [
        bar
        for bar in filled_rectangles(read_pdf(pdf).pages[0])
        if bar.y == pytest.approx(barcode.y, abs=0.01)
        and bar.height == pytest.approx(barcode.bar_height, abs=0.01)
    ]
    assert decode_bars(bars, barcode.module) == accession
    check_layout_fits(layout)
