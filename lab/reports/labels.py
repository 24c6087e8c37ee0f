"""Specimen labels: one label per PDF page, the page exactly the size of the label stock.

Layout, top to bottom: patient name (with a STAT/ASAP block at the right), identifier and
birth date, the Code 128 barcode of the accession number, the accession number in text,
container and collection time, the tests. `layout_label` computes every position and font size
from font metrics (pure, no PDF); `render_labels` only draws what the layout says, so tests
can check the layout the renderer really used.

Barcode geometry (a 203 dpi thermal head prints dots of 25.4/203 = 0.125 mm):
- The module (narrowest bar, "X") is a whole number of dots, so every bar and space prints
  the same width; we use the widest module of 0.25-0.5 mm that fits (4, 3 or 2 dots at 203 dpi),
  never 1 dot (0.125 mm), which smears on thermal paper. The bars' left edge is put on the
  dot grid for the same reason.
- Quiet zones of at least 10 X on each side (ISO/IEC 15417, the Code 128 specification),
  inside the label; the bars stay inside the printable margin.
- Code 128 (subset switching done by reportlab) is what CLSI AUTO02-A2 asks of specimen
  containers; the sizes follow CLSI AUTO12-A (2 x 1 inch is its standard label).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib import colors
from reportlab.lib.units import inch, mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen.canvas import Canvas

from lab.reports.fonts import ReportFonts, fit_text, load_fonts, printable_text, text_width
from lab.reports.formatting import (
    format_date,
    format_datetime,
    format_patient_identifier,
    format_patient_name,
)
from lab.reports.types import LabelDoesNotFitError, LabelStock, ReportInputError, SpecimenLabel

# Named presets for common label printers (Zebra, Brady, Citizen, Godex rolls).
LABEL_STOCKS: Mapping[str, LabelStock] = {
    # CLSI AUTO12-A's standard specimen label, 2 x 1 inch.
    "clsi-2x1in": LabelStock(
        name="clsi-2x1in",
        width_mm=2 * inch / mm,
        height_mm=1 * inch / mm,
        margin_mm=1.5,
        barcode_height_mm=7.0,
        font_size_pt=6.5,
    ),
    # The metric tube label sold across Europe, 50 x 25 mm.
    "tube-50x25mm": LabelStock(
        name="tube-50x25mm",
        width_mm=50.0,
        height_mm=25.0,
        margin_mm=1.5,
        barcode_height_mm=7.0,
        font_size_pt=6.5,
    ),
    # 2.25 x 1.25 inch (57 x 32 mm), the classic Zebra specimen label.
    "tube-57x32mm": LabelStock(
        name="tube-57x32mm",
        width_mm=2.25 * inch / mm,
        height_mm=1.25 * inch / mm,
        margin_mm=2.0,
        barcode_height_mm=9.0,
        font_size_pt=8.0,
    ),
    # 4 x 2 inch shipping/rack label for a tube rack or a transport box.
    "rack-4x2in": LabelStock(
        name="rack-4x2in",
        width_mm=4 * inch / mm,
        height_mm=2 * inch / mm,
        margin_mm=3.0,
        barcode_height_mm=15.0,
        font_size_pt=13.0,
        min_font_size_pt=8.0,
    ),
}
DEFAULT_STOCK = LABEL_STOCKS["tube-50x25mm"]

QUIET_ZONE_MODULES = 10  # ISO/IEC 15417: at least 10 X on both sides
MIN_MODULE_MM = 0.25  # 2 dots at 203 dpi, 3 at 300 dpi
MAX_MODULE_MM = 0.51  # 4 dots at 203 dpi (0.500 mm)

TextRole = Literal[
    "name", "identifier", "birth_date", "accession", "container", "collected", "tests", "priority"
]
# As the lab's screens say it (bokmål): ØH (øyeblikkelig hjelp) and Haster.
_PRIORITY_MARKS = {"stat": "ØH", "asap": "HASTER"}


@dataclass(frozen=True, slots=True, kw_only=True)
class PlacedText:
    role: TextRole
    text: str
    font_name: str
    font_size: float
    x: float  # left end of the drawn string
    baseline: float
    width: float  # stringWidth of text at font_size, as measured by the layout
    box_left: float  # the space the text was given
    box_right: float
    bottom: float  # baseline + descent
    top: float  # baseline + ascent
    truncated: bool
    color: Literal["black", "white"] = "black"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlacedBlock:
    """A filled (STAT) or outlined (ASAP) rectangle behind the priority mark."""

    x: float
    y: float
    width: float
    height: float
    filled: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PlacedBarcode:
    value: str
    symbol: Any  # reportlab Code128, configured exactly as drawn
    x: float  # left edge of the left quiet zone
    y: float
    width: float  # quiet zones included
    bars_x: float
    bars_width: float
    bar_height: float
    module: float  # X, the narrowest bar, in points
    module_dots: int
    quiet_zone: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelLayout:
    stock: LabelStock
    page_width: float
    page_height: float
    texts: tuple[PlacedText, ...]
    blocks: tuple[PlacedBlock, ...]
    barcode: PlacedBarcode

    def text(self, role: TextRole) -> PlacedText | None:
        return next((placed for placed in self.texts if placed.role == role), None)


class _Cursor:
    """Places lines from the top of the printable area down, measuring as it goes."""

    def __init__(self, stock: LabelStock, fonts: ReportFonts) -> None:
        self.stock = stock
        self.fonts = fonts
        self.left = stock.margin_mm * mm
        self.right = (stock.width_mm - stock.margin_mm) * mm
        self.floor = stock.margin_mm * mm
        self.top = (stock.height_mm - stock.margin_mm) * mm
        self.texts: list[PlacedText] = []

    def gap(self, size: float) -> None:
        self.top -= size * 0.18

    def line_box(self, font_name: str, size: float) -> tuple[float, float]:
        """Ascent and (negative) descent of a line at this size."""
        ascent, descent = pdfmetrics.getAscentDescent(font_name, size)
        return float(ascent), float(descent)

    def place(
        self,
        role: TextRole,
        text: str,
        *,
        bold: bool,
        size: float,
        baseline: float,
        box_left: float,
        box_right: float,
        align: Literal["left", "right", "centre"] = "left",
        color: Literal["black", "white"] = "black",
    ) -> PlacedText:
        font_name = self.fonts.bold if bold else self.fonts.regular
        fitted = fit_text(
            printable_text(text, self.fonts),
            font_name=font_name,
            max_size=size,
            min_size=min(self.stock.min_font_size_pt, size),
            max_width=box_right - box_left,
            ellipsis=self.fonts.ellipsis,
        )
        if align == "left":
            x = box_left
        elif align == "right":
            x = box_right - fitted.width
        else:
            x = box_left + (box_right - box_left - fitted.width) / 2
        ascent, descent = self.line_box(font_name, fitted.font_size)
        placed = PlacedText(
            role=role,
            text=fitted.text,
            font_name=font_name,
            font_size=fitted.font_size,
            x=x,
            baseline=baseline,
            width=fitted.width,
            box_left=box_left,
            box_right=box_right,
            bottom=baseline + descent,
            top=baseline + ascent,
            truncated=fitted.truncated,
            color=color,
        )
        self.texts.append(placed)
        return placed

    def next_baseline(self, font_name: str, size: float) -> tuple[float, float]:
        """Baseline for a line of this size under the cursor; returns (baseline, bottom)."""
        ascent, descent = self.line_box(font_name, size)
        baseline = self.top - ascent
        return baseline, baseline + descent


def layout_label(
    label: SpecimenLabel, *, stock: LabelStock, fonts: ReportFonts | None = None
) -> LabelLayout:
    """Every string, block and the barcode of one label, positioned in points.

    Raises LabelDoesNotFitError when the barcode cannot be printed scannably on this stock
    or the stock is too small for the lines of text.
    """
    fonts = fonts or load_fonts()
    cursor = _Cursor(stock, fonts)
    base = stock.font_size_pt
    blocks: list[PlacedBlock] = []

    # Line 1: name, with the priority mark at the right (inverted for STAT so it is seen
    # from across the room; outlined for ASAP).
    name_size = base * 1.2
    baseline, bottom = cursor.next_baseline(fonts.bold, name_size)
    name_right = cursor.right
    mark = _PRIORITY_MARKS.get(label.priority)
    if mark is not None:
        pad = name_size * 0.25
        mark_width = text_width(mark, fonts.bold, name_size)
        block = PlacedBlock(
            x=cursor.right - mark_width - 2 * pad,
            y=bottom - pad / 2,
            width=mark_width + 2 * pad,
            height=cursor.top - bottom + pad / 2,
            filled=label.priority == "stat",
        )
        blocks.append(block)
        cursor.place(
            "priority",
            mark,
            bold=True,
            size=name_size,
            baseline=baseline,
            box_left=block.x + pad,
            box_right=block.x + block.width - pad,
            align="centre",
            color="white" if block.filled else "black",
        )
        name_right = block.x - name_size * 0.3
        bottom = min(bottom, block.y)
    name = format_patient_name(label.patient.family_name, label.patient.given_name)
    cursor.place(
        "name",
        name,
        bold=True,
        size=name_size,
        baseline=baseline,
        box_left=cursor.left,
        box_right=name_right,
    )
    cursor.top = bottom
    cursor.gap(base)

    # Line 2: fødselsnummer at the left, birth date at the right.
    baseline, bottom = cursor.next_baseline(fonts.regular, base)
    split = cursor.left + (cursor.right - cursor.left) * 0.6
    cursor.place(
        "identifier",
        format_patient_identifier(label.patient.identifier),
        bold=False,
        size=base,
        baseline=baseline,
        box_left=cursor.left,
        box_right=split - base * 0.3,
    )
    cursor.place(
        "birth_date",
        format_date(label.patient.birth_date),
        bold=False,
        size=base,
        baseline=baseline,
        box_left=split,
        box_right=cursor.right,
        align="right",
    )
    cursor.top = bottom
    cursor.gap(base)

    barcode = _place_barcode(label.accession_number, stock, top=cursor.top)
    cursor.top = barcode.y
    cursor.gap(base)

    # Line 4: the accession number as text, centred under the bars, for when a scan fails.
    baseline, bottom = cursor.next_baseline(fonts.bold, base)
    cursor.place(
        "accession",
        label.accession_number,
        bold=True,
        size=base,
        baseline=baseline,
        box_left=cursor.left,
        box_right=cursor.right,
        align="centre",
    )
    cursor.top = bottom
    cursor.gap(base)

    # Line 5: container at the left, collection time at the right.
    small = base * 0.92
    baseline, bottom = cursor.next_baseline(fonts.bold, small)
    container_right = cursor.right
    if label.collected_at is not None:
        collected = cursor.place(
            "collected",
            format_datetime(label.collected_at),
            bold=False,
            size=small,
            baseline=baseline,
            box_left=cursor.left + (cursor.right - cursor.left) * 0.4,
            box_right=cursor.right,
            align="right",
        )
        container_right = collected.x - small * 0.5
    cursor.place(
        "container",
        label.container,
        bold=True,
        size=small,
        baseline=baseline,
        box_left=cursor.left,
        box_right=container_right,
    )
    cursor.top = bottom
    cursor.gap(base)

    # Line 6: the tests; whole codes only, the rest counted ("HB LPK +3") rather than cut.
    baseline, bottom = cursor.next_baseline(fonts.regular, small)
    cursor.place(
        "tests",
        _tests_that_fit(label.tests, fonts, small, cursor.right - cursor.left),
        bold=False,
        size=small,
        baseline=baseline,
        box_left=cursor.left,
        box_right=cursor.right,
    )
    if bottom < cursor.floor:
        raise LabelDoesNotFitError(
            f"label stock {stock.name} is too small for the label lines "
            f"({(cursor.floor - bottom) / mm:.1f} mm short)"
        )
    return LabelLayout(
        stock=stock,
        page_width=stock.width_mm * mm,
        page_height=stock.height_mm * mm,
        texts=tuple(cursor.texts),
        blocks=tuple(blocks),
        barcode=barcode,
    )


def _tests_that_fit(tests: Sequence[str], fonts: ReportFonts, size: float, width: float) -> str:
    codes = [printable_text(code, fonts).strip() for code in tests]
    codes = [code for code in codes if code]
    for shown in range(len(codes), 0, -1):
        hidden = len(codes) - shown
        text = " ".join(codes[:shown]) + (f" +{hidden}" if hidden else "")
        if text_width(text, fonts.regular, size) <= width:
            return text
    return f"+{len(codes)}" if codes else ""


def _place_barcode(accession_number: str, stock: LabelStock, *, top: float) -> PlacedBarcode:
    dot = 72.0 / stock.printer_dpi  # one printer dot in points
    dot_mm = 25.4 / stock.printer_dpi
    smallest = max(1, math.ceil(MIN_MODULE_MM / dot_mm - 1e-6))
    largest = max(smallest, math.floor(MAX_MODULE_MM / dot_mm + 1e-6))
    page_width = stock.width_mm * mm
    left, right = stock.margin_mm * mm, (stock.width_mm - stock.margin_mm) * mm
    bar_height = stock.barcode_height_mm * mm
    for dots in range(largest, smallest - 1, -1):
        module = dots * dot
        quiet = QUIET_ZONE_MODULES * module
        symbol = Code128(
            accession_number,
            barWidth=module,
            barHeight=bar_height,
            quiet=1,
            lquiet=quiet,
            rquiet=quiet,
            humanReadable=0,
        )
        total = float(symbol.width)
        bars_width = total - 2 * quiet
        if total > page_width or bars_width > right - left:
            continue
        # Centre the bars with their left edge on the printer's dot grid, keeping the bars
        # inside the margins and the quiet zones on the label.
        lowest = max(left, quiet)
        highest = min(right, page_width - quiet) - bars_width
        bars_x = round((page_width - bars_width) / 2 / dot) * dot
        if bars_x < lowest:
            bars_x = math.ceil(lowest / dot - 1e-9) * dot
        elif bars_x > highest:
            bars_x = math.floor(highest / dot + 1e-9) * dot
        if not lowest - 1e-9 <= bars_x <= highest + 1e-9:
            continue
        return PlacedBarcode(
            value=accession_number,
            symbol=symbol,
            x=bars_x - quiet,
            y=top - bar_height,
            width=total,
            bars_x=bars_x,
            bars_width=bars_width,
            bar_height=bar_height,
            module=module,
            module_dots=dots,
            quiet_zone=quiet,
        )
    raise LabelDoesNotFitError(
        f"accession number {accession_number!r} is too long for a scannable barcode on "
        f"label stock {stock.name} ({stock.width_mm:.1f} mm wide)"
    )


def _draw_label(canvas: Canvas, layout: LabelLayout) -> None:
    for block in layout.blocks:
        canvas.setLineWidth(0.8)
        canvas.rect(
            block.x,
            block.y,
            block.width,
            block.height,
            stroke=0 if block.filled else 1,
            fill=1 if block.filled else 0,
        )
    for placed in layout.texts:
        if not placed.text:
            continue
        canvas.setFillColor(colors.white if placed.color == "white" else colors.black)
        canvas.setFont(placed.font_name, placed.font_size)
        canvas.drawString(placed.x, placed.baseline, placed.text)
    canvas.setFillColor(colors.black)
    layout.barcode.symbol.drawOn(canvas, layout.barcode.x, layout.barcode.y)


def render_labels_with_layout(
    labels: Sequence[SpecimenLabel], *, stock: LabelStock, fonts: ReportFonts | None = None
) -> tuple[bytes, tuple[LabelLayout, ...]]:
    """The PDF and the layout of each page (for tests and print previews)."""
    if not labels:
        raise ReportInputError("no labels to print")
    fonts = fonts or load_fonts()
    layouts = tuple(layout_label(label, stock=stock, fonts=fonts) for label in labels)
    buffer = io.BytesIO()
    # invariant=1: no creation date or random ID, so the same labels give the same bytes.
    canvas = Canvas(
        buffer, pagesize=(stock.width_mm * mm, stock.height_mm * mm), invariant=1, pageCompression=1
    )
    canvas.setTitle("Prøveetiketter")
    canvas.setCreator("lab.reports")
    for layout in layouts:
        _draw_label(canvas, layout)
        canvas.showPage()
    canvas.save()
    return buffer.getvalue(), layouts


def render_labels(
    labels: Sequence[SpecimenLabel], *, stock: LabelStock, fonts: ReportFonts | None = None
) -> bytes:
    """One label per page, each page the size of the stock."""
    pdf, _ = render_labels_with_layout(labels, stock=stock, fonts=fonts)
    return pdf
