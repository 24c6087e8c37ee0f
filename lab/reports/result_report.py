"""The patient result report (A4 portrait), and the page frame it shares with the cumulative.

Every page carries the lab, the report title, the patient's name and identifier (a loose
page must still say whose results it holds), the "KORRIGERT SVAR" banner when any result is
a correction, the print time and "Side n av N". The total page count is known only after
layout, so the document is laid out twice: once to count pages, once to print with the count.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from lab.reports.fonts import ReportFonts, fit_text, load_fonts, printable_text
from lab.reports.formatting import (
    TEXTS,
    format_date,
    format_datetime,
    format_flag,
    format_page_number,
    format_patient_identifier,
    format_patient_name,
    format_reference_interval,
    format_value,
)
from lab.reports.types import (
    LabDetails,
    Language,
    PatientDetails,
    ReportError,
    ResultLine,
    ResultReport,
)

# A comment longer than this goes under the table, where it may run across pages; a table
# row cannot be split, and a row taller than the page cannot be laid out at all.
TABLE_COMMENT_LIMIT = 400
BANNER_COLOR = colors.HexColor("#A8001C")  # dark red: prints as dark grey in black and white
RULE_COLOR = colors.HexColor("#777777")
ZEBRA_COLOR = colors.HexColor("#F1F1F1")


@dataclass(frozen=True, slots=True, kw_only=True)
class PageFrame:
    """What the header and footer of every page of a report show."""

    lab: LabDetails
    title: str
    patient: PatientDetails
    banner: str | None
    printed: str
    language: Language
    pagesize: tuple[float, float]
    side_margin: float = 18 * mm

    @property
    def header_height(self) -> float:
        lines = max(3, 1 + min(4, len(self.lab_lines)))
        return float(10 * mm + lines * 10 + (22 if self.banner else 0) + 12)

    @property
    def footer_height(self) -> float:
        return float(18 * mm)

    @property
    def lab_lines(self) -> list[str]:
        lines = list(self.lab.address_lines)
        if self.lab.phone:
            lines.append(f"Tlf. {self.lab.phone}" if self.language == "nb" else self.lab.phone)
        return lines


def _draw_fitted(
    canvas: Canvas,
    fonts: ReportFonts,
    text: str,
    *,
    bold: bool,
    size: float,
    x: float,
    y: float,
    width: float,
    align: str = "left",
) -> None:
    font_name = fonts.bold if bold else fonts.regular
    fitted = fit_text(
        printable_text(text, fonts),
        font_name=font_name,
        max_size=size,
        min_size=min(6.0, size),
        max_width=width,
        ellipsis=fonts.ellipsis,
    )
    canvas.setFont(font_name, fitted.font_size)
    if align == "right":
        canvas.drawRightString(x + width, y, fitted.text)
    elif align == "centre":
        canvas.drawCentredString(x + width / 2, y, fitted.text)
    else:
        canvas.drawString(x, y, fitted.text)


def draw_page_frame(
    canvas: Canvas, frame: PageFrame, fonts: ReportFonts, page: int, total: int | None
) -> None:
    width, height = frame.pagesize
    left, right = frame.side_margin, width - frame.side_margin
    half = (right - left) / 2 - 4 * mm
    canvas.saveState()
    canvas.setFillColor(colors.black)
    y = height - 10 * mm - 11
    _draw_fitted(canvas, fonts, frame.lab.name, bold=True, size=11, x=left, y=y, width=half)
    _draw_fitted(
        canvas,
        fonts,
        frame.title,
        bold=True,
        size=11,
        x=right - half,
        y=y,
        width=half,
        align="right",
    )
    patient = frame.patient
    right_lines = [
        (format_patient_name(patient.family_name, patient.given_name), True),
        (
            f"{format_patient_identifier(patient.identifier)}   "
            f"{TEXTS[frame.language].birth_date} {format_date(patient.birth_date)}",
            False,
        ),
    ]
    lab_lines = frame.lab_lines[:4]
    for index in range(max(len(lab_lines), len(right_lines))):
        y -= 10
        if index < len(lab_lines):
            _draw_fitted(
                canvas, fonts, lab_lines[index], bold=False, size=8, x=left, y=y, width=half
            )
        if index < len(right_lines):
            text, bold = right_lines[index]
            _draw_fitted(
                canvas,
                fonts,
                text,
                bold=bold,
                size=9,
                x=right - half,
                y=y,
                width=half,
                align="right",
            )
    y -= 6
    canvas.setStrokeColor(RULE_COLOR)
    canvas.setLineWidth(0.6)
    canvas.line(left, y, right, y)
    if frame.banner:
        canvas.setFillColor(BANNER_COLOR)
        canvas.rect(left, y - 20, right - left, 16, stroke=0, fill=1)
        canvas.setFillColor(colors.white)
        _draw_fitted(
            canvas,
            fonts,
            frame.banner,
            bold=True,
            size=11,
            x=left,
            y=y - 16,
            width=right - left,
            align="centre",
        )
        canvas.setFillColor(colors.black)
    # Footer.
    y = 10 * mm
    canvas.line(left, y + 10, right, y + 10)
    texts = TEXTS[frame.language]
    _draw_fitted(
        canvas,
        fonts,
        f"{texts.printed_at} {frame.printed}",
        bold=False,
        size=8,
        x=left,
        y=y,
        width=half,
    )
    _draw_fitted(
        canvas,
        fonts,
        format_page_number(page, total, frame.language),
        bold=True,
        size=8,
        x=right - half,
        y=y,
        width=half,
        align="right",
    )
    canvas.restoreState()


class _PageFrameDrawer:
    """The onPage callback of one layout pass: draws the frame and counts the pages."""

    def __init__(self, frame: PageFrame, fonts: ReportFonts, total: int | None) -> None:
        self.frame, self.fonts, self.total = frame, fonts, total
        self.count = 0

    def __call__(self, canvas: Canvas, _document: BaseDocTemplate) -> None:
        self.count += 1
        draw_page_frame(canvas, self.frame, self.fonts, canvas.getPageNumber(), self.total)


def build_paged_pdf(
    make_story: Callable[[], list[Flowable]],
    *,
    frame: PageFrame,
    fonts: ReportFonts,
    title: str,
) -> tuple[bytes, int]:
    """Lay the story out on pages with the frame; returns the PDF and its page count.

    Laid out until the page count is stable: the footer text does not change the flow, so
    the second pass normally agrees with the first.
    """
    total: int | None = None
    for _attempt in range(3):
        buffer = io.BytesIO()
        pages = _PageFrameDrawer(frame, fonts, total)
        width, height = frame.pagesize
        document = BaseDocTemplate(
            buffer,
            pagesize=frame.pagesize,
            leftMargin=frame.side_margin,
            rightMargin=frame.side_margin,
            topMargin=frame.header_height,
            bottomMargin=frame.footer_height,
            title=title,
            author=frame.lab.name,
            creator="lab.reports",
            invariant=1,
        )
        body = Frame(
            frame.side_margin,
            frame.footer_height,
            width - 2 * frame.side_margin,
            height - frame.header_height - frame.footer_height,
            id="body",
            leftPadding=0,
            rightPadding=0,
            topPadding=0,
            bottomPadding=0,
        )
        document.addPageTemplates([PageTemplate(id="page", frames=[body], onPage=pages)])
        document.build(make_story())
        if pages.count == total:
            return buffer.getvalue(), pages.count
        total = pages.count
    raise ReportError("page count did not settle between layout passes")


def paragraph_styles(fonts: ReportFonts, size: float = 8.5) -> dict[str, ParagraphStyle]:
    base = ParagraphStyle(
        "cell", fontName=fonts.regular, fontSize=size, leading=size * 1.2, alignment=TA_LEFT
    )
    return {
        "cell": base,
        "right": ParagraphStyle("right", parent=base, alignment=TA_RIGHT),
        "header": ParagraphStyle("header", parent=base, fontName=fonts.bold),
        "header_right": ParagraphStyle(
            "header_right", parent=base, fontName=fonts.bold, alignment=TA_RIGHT
        ),
        "small": ParagraphStyle("small", parent=base, fontSize=size - 1, leading=(size - 1) * 1.2),
        "body": ParagraphStyle("body", parent=base, fontSize=9.5, leading=12),
        "heading": ParagraphStyle(
            "heading", parent=base, fontName=fonts.bold, fontSize=10, leading=13, spaceBefore=6
        ),
    }


def markup(text: str, fonts: ReportFonts) -> str:
    """Text made safe for Paragraph markup: printable in the font, and & < > escaped."""
    return escape(printable_text(text, fonts))


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultReportLayout:
    page_count: int
    long_comment_count: int


def _when(moment: datetime | None) -> str:
    return format_datetime(moment) if moment is not None else ""


def _details_table(report: ResultReport, fonts: ReportFonts) -> Table:
    texts = TEXTS[report.language]
    styles = paragraph_styles(fonts, 9)
    patient, order = report.patient, report.order

    left = [
        (texts.patient, format_patient_name(patient.family_name, patient.given_name)),
        (texts.identifier, format_patient_identifier(patient.identifier)),
        (texts.birth_date, format_date(patient.birth_date)),
        (texts.sex, texts.sex_names[patient.sex]),
    ]
    right = [
        (texts.placer_order_number, order.placer_order_number),
        (texts.filler_order_number, order.filler_order_number),
        (texts.ordering_clinician, order.ordering_clinician),
        (texts.ordering_location, order.ordering_location),
        (texts.collected_at, _when(order.collected_at)),
        (texts.received_at, _when(order.received_at)),
    ]
    rows = []
    for index in range(max(len(left), len(right))):
        row: list[Paragraph | str] = []
        for column in (left, right):
            if index < len(column):
                label, value = column[index]
                row += [
                    Paragraph(markup(label, fonts), styles["header"]),
                    Paragraph(markup(value, fonts), styles["cell"]),
                ]
            else:
                row += ["", ""]
        rows.append(row)
    table = Table(rows, colWidths=[26 * mm, 57 * mm, 36 * mm, 55 * mm], hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("TOPPADDING", (0, 0), (-1, -1), 1),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
            ]
        )
    )
    return table


def _results_table(report: ResultReport, fonts: ReportFonts, long_comments: list[str]) -> Table:
    texts = TEXTS[report.language]
    styles = paragraph_styles(fonts)
    language = report.language
    header = [
        Paragraph(markup(texts.test, fonts), styles["header"]),
        Paragraph(markup(texts.result, fonts), styles["header_right"]),
        Paragraph(markup(texts.unit, fonts), styles["header"]),
        Paragraph(markup(texts.reference_interval, fonts), styles["header"]),
        Paragraph(markup(texts.flag, fonts), styles["header"]),
        Paragraph(markup(texts.status, fonts), styles["header"]),
    ]
    rows: list[list[Paragraph | str]] = [header]
    commands: list[tuple[object, ...]] = [
        ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 2),
        ("RIGHTPADDING", (0, 0), (-1, -1), 2),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]
    for index, result in enumerate(report.results):
        first = len(rows)
        rows.append(_result_row(result, fonts, styles, language))
        if result.status == "corrected" and result.corrected_from is not None:
            previous = format_value(
                result.corrected_from, result.corrected_from_comparator, language
            )
            note = texts.corrected_from.format(
                value=f"{previous} {result.unit}".strip(), reason=result.correction_reason or "–"
            )
            rows.append([Paragraph(f"<b>{markup(note, fonts)}</b>", styles["small"])] + [""] * 5)
            commands += [
                ("SPAN", (0, len(rows) - 1), (-1, len(rows) - 1)),
                ("NOSPLIT", (0, first), (-1, len(rows) - 1)),
            ]
        comment = (result.comment or "").strip()
        if comment:
            if len(comment) > TABLE_COMMENT_LIMIT:
                long_comments.append(comment)
                note = f"{texts.comment}: [{len(long_comments)}]"
                shown = markup(note, fonts)
            else:
                shown = f"<b>{markup(texts.comment, fonts)}:</b> {markup(comment, fonts)}"
            rows.append([Paragraph(shown, styles["small"]), "", "", "", "", ""])
            commands += [
                ("SPAN", (0, len(rows) - 1), (-1, len(rows) - 1)),
                ("NOSPLIT", (0, first), (-1, len(rows) - 1)),
            ]
        if index % 2 == 1:
            commands.append(("BACKGROUND", (0, first), (-1, len(rows) - 1), ZEBRA_COLOR))
    if not report.results:
        rows.append([Paragraph(markup(texts.no_results, fonts), styles["cell"])] + [""] * 5)
        commands.append(("SPAN", (0, 1), (-1, 1)))
    table = Table(
        rows,
        colWidths=[50 * mm, 24 * mm, 20 * mm, 30 * mm, 12 * mm, 38 * mm],
        repeatRows=1,
        hAlign="LEFT",
    )
    table.setStyle(TableStyle(commands))
    return table


def _result_row(
    result: ResultLine,
    fonts: ReportFonts,
    styles: dict[str, ParagraphStyle],
    language: Language,
) -> list[Paragraph | str]:
    value = markup(format_value(result.value, result.comparator, language), fonts)
    flag = markup(format_flag(result.flag), fonts)
    if result.flag:
        # Bold makes an abnormal value stand out in black-and-white print too.
        value, flag = f"<b>{value}</b>", f"<b>{flag}</b>"
    status = TEXTS[language].status_names[result.status]
    if result.status == "corrected":
        status = f"<b>{markup(status, fonts)}</b>"
    else:
        status = markup(status, fonts)
    return [
        Paragraph(markup(result.test_name, fonts), styles["cell"]),
        Paragraph(value, styles["right"]),
        Paragraph(markup(result.unit, fonts), styles["cell"]),
        Paragraph(
            markup(format_reference_interval(result.reference_interval, language), fonts),
            styles["cell"],
        ),
        Paragraph(flag, styles["cell"]),
        Paragraph(status, styles["cell"]),
    ]


def build_result_report(
    report: ResultReport, *, fonts: ReportFonts | None = None
) -> tuple[bytes, ResultReportLayout]:
    fonts = fonts or load_fonts()
    texts = TEXTS[report.language]
    frame = PageFrame(
        lab=report.lab,
        title=texts.result_report_title,
        patient=report.patient,
        banner=texts.corrected_banner if report.is_corrected else None,
        printed=format_datetime(report.printed_at),
        language=report.language,
        pagesize=A4,
    )
    long_comment_count = 0

    def make_story() -> list[Flowable]:
        nonlocal long_comment_count
        styles = paragraph_styles(fonts)
        long_comments: list[str] = []
        story: list[Flowable] = [
            _details_table(report, fonts),
            Spacer(1, 6 * mm),
            _results_table(report, fonts, long_comments),
        ]
        if long_comments:
            story.append(Paragraph(markup(texts.long_comments, fonts), styles["heading"]))
            for number, comment in enumerate(long_comments, start=1):
                story.append(Paragraph(f"[{number}] {markup(comment, fonts)}", styles["body"]))
        coded = [result for result in report.results if result.codes]
        if coded:
            # Where a reader looks a test up: the same codes as the catalogue page shows.
            story.append(Paragraph(markup(texts.test_codes, fonts), styles["heading"]))
            for result in coded:
                text = f"{result.test_name}: {result.codes}"
                story.append(Paragraph(markup(text, fonts), styles["body"]))
        story.append(Spacer(1, 8 * mm))
        verification = report.verification
        if verification is not None:
            line = texts.verified_by.format(
                who=printable_text(verification.verified_by, fonts),
                when=format_datetime(verification.verified_at),
            )
        else:
            line = texts.not_verified
        story.append(Paragraph(f"<b>{escape(line)}</b>", styles["body"]))
        long_comment_count = len(long_comments)
        return story

    pdf, pages = build_paged_pdf(
        make_story, frame=frame, fonts=fonts, title=texts.result_report_title
    )
    return pdf, ResultReportLayout(page_count=pages, long_comment_count=long_comment_count)


def render_result_report(report: ResultReport, *, fonts: ReportFonts | None = None) -> bytes:
    """The patient result report as A4 PDF bytes, in the report's language."""
    pdf, _ = build_result_report(report, fonts=fonts)
    return pdf
