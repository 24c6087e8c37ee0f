"""The cumulative report (A4 landscape): one row per test, one column per sample.

Columns run newest sample first (leftmost), so the first page always carries the latest
results, which is what a clinician opens the report for. With more samples than
`samples_per_page` (default 8), the columns are split into groups that each start on a new
page, every test row repeated in the same order; with more tests than fit on a page, the
rows of a group run over pages with the column header repeated.
"""

from __future__ import annotations

from dataclasses import dataclass

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, PageBreak, Paragraph, Spacer, Table, TableStyle

from lab.reports.fonts import ReportFonts, load_fonts
from lab.reports.formatting import (
    TEXTS,
    format_date,
    format_datetime,
    format_flag,
    format_reference_interval,
    format_time_of_day,
    format_value,
    to_oslo,
)
from lab.reports.result_report import (
    ZEBRA_COLOR,
    PageFrame,
    build_paged_pdf,
    markup,
    paragraph_styles,
)
from lab.reports.types import CumulativeReport, CumulativeSample, CumulativeValue, Language

SIDE_MARGIN = 12 * mm
TEST_COLUMN = 62 * mm
REFERENCE_COLUMN = 30 * mm
UNIT_COLUMN = 20 * mm


@dataclass(frozen=True, slots=True, kw_only=True)
class CumulativeLayout:
    # Accession numbers of each column group, in print order (newest first).
    column_groups: tuple[tuple[str, ...], ...]
    page_count: int


def column_groups(report: CumulativeReport) -> tuple[tuple[CumulativeSample, ...], ...]:
    samples = report.samples_newest_first
    size = report.samples_per_page
    groups = tuple(samples[start : start + size] for start in range(0, len(samples), size))
    return groups or ((),)


def _cell_markup(value: CumulativeValue | None, fonts: ReportFonts, language: Language) -> str:
    if value is None:
        return ""
    shown = markup(format_value(value.value, value.comparator, language), fonts)
    if value.flag:
        return f"<b>{shown} {markup(format_flag(value.flag), fonts)}</b>"
    return shown


def _group_table(
    report: CumulativeReport, group: tuple[CumulativeSample, ...], fonts: ReportFonts
) -> Table:
    texts = TEXTS[report.language]
    styles = paragraph_styles(fonts, 8)
    usable = landscape(A4)[0] - 2 * SIDE_MARGIN
    fixed = TEST_COLUMN + REFERENCE_COLUMN + UNIT_COLUMN
    # Columns keep the width they have in a full group, so a last, short group lines up.
    sample_width = (usable - fixed) / report.samples_per_page
    header: list[Paragraph | str] = [
        Paragraph(markup(texts.test, fonts), styles["header"]),
        Paragraph(markup(texts.reference_interval, fonts), styles["header"]),
        Paragraph(markup(texts.unit, fonts), styles["header"]),
    ]
    for sample in group:
        header.append(
            Paragraph(
                f"<b>{format_date(to_oslo(sample.collected_at).date())}"
                f"<br/>{format_time_of_day(sample.collected_at)}</b><br/>"
                f"<font size='6.5'>{markup(sample.accession_number, fonts)}</font>",
                styles["right"],
            )
        )
    rows: list[list[Paragraph | str]] = [header]
    for row in report.tests:
        by_sample = {value.accession_number: value for value in row.values}
        cells: list[Paragraph | str] = [
            Paragraph(markup(row.test_name, fonts), styles["cell"]),
            Paragraph(
                markup(format_reference_interval(row.reference_interval, report.language), fonts),
                styles["cell"],
            ),
            Paragraph(markup(row.unit, fonts), styles["cell"]),
        ]
        for sample in group:
            cells.append(
                Paragraph(
                    _cell_markup(by_sample.get(sample.accession_number), fonts, report.language),
                    styles["right"],
                )
            )
        rows.append(cells)
    if not report.tests:
        rows.append(
            [Paragraph(markup(texts.no_results, fonts), styles["cell"])] + [""] * (len(header) - 1)
        )
    commands: list[tuple[object, ...]] = [
        ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("VALIGN", (0, 0), (-1, 0), "BOTTOM"),
        ("LEFTPADDING", (0, 0), (-1, -1), 2),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ("LINEAFTER", (2, 0), (2, -1), 0.5, colors.grey),
    ]
    for index in range(2, len(rows), 2):
        commands.append(("BACKGROUND", (0, index), (-1, index), ZEBRA_COLOR))
    table = Table(
        rows,
        colWidths=[TEST_COLUMN, REFERENCE_COLUMN, UNIT_COLUMN] + [sample_width] * len(group),
        repeatRows=1,
        hAlign="LEFT",
    )
    table.setStyle(TableStyle(commands))
    return table


def build_cumulative_report(
    report: CumulativeReport, *, fonts: ReportFonts | None = None
) -> tuple[bytes, CumulativeLayout]:
    fonts = fonts or load_fonts()
    texts = TEXTS[report.language]
    frame = PageFrame(
        lab=report.lab,
        title=texts.cumulative_title,
        patient=report.patient,
        banner=None,
        printed=format_datetime(report.printed_at),
        language=report.language,
        pagesize=landscape(A4),
        side_margin=SIDE_MARGIN,
    )
    groups = column_groups(report)
    count = len(report.samples)

    def make_story() -> list[Flowable]:
        styles = paragraph_styles(fonts)
        story: list[Flowable] = []
        first = 1
        for index, group in enumerate(groups):
            if index:
                story.append(PageBreak())
            last = first + len(group) - 1
            shown = texts.samples_shown.format(first=first, last=max(first, last), count=count)
            story.append(
                Paragraph(f"<b>{markup(shown, fonts)}</b> ({texts.newest_first})", styles["body"])
            )
            story.append(Spacer(1, 2 * mm))
            story.append(_group_table(report, group, fonts))
            first = last + 1
        return story

    pdf, pages = build_paged_pdf(make_story, frame=frame, fonts=fonts, title=texts.cumulative_title)
    layout = CumulativeLayout(
        column_groups=tuple(tuple(s.accession_number for s in group) for group in groups),
        page_count=pages,
    )
    return pdf, layout


def render_cumulative_report(
    report: CumulativeReport, *, fonts: ReportFonts | None = None
) -> bytes:
    """The cumulative report as A4 landscape PDF bytes, newest sample in the first column."""
    pdf, _ = build_cumulative_report(report, fonts=fonts)
    return pdf
