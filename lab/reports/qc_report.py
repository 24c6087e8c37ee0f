"""The monthly internal QC report (A4 portrait, PDF): per analyser, test, level and lot a
Levey-Jennings chart, the target in use, the month's statistics of accepted points (rejected
points left out), and every rejected run with the rule that fired; then the month's lock overrides
(who and why), control results kept in the QC queue (the reason, and what became of them) and
patient-based alarms. Pure: plain data in, bytes out.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import (
    Flowable,
    Image,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from lab.reports.fonts import load_fonts
from lab.reports.qc_charts import LeveyJennings, levey_jennings_png


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectedRun:
    when: str  # as the lab reads it: 27.11.2026 08:15
    value: str
    rules: str


@dataclass(frozen=True, slots=True, kw_only=True)
class QcReportSection:
    instrument: str
    test_code: str
    level: int
    material: str
    lot: str
    target: str  # "140 ± 1.2 mmol/L (entered)"
    n_accepted: int
    n_rejected: int
    month_mean: str
    month_sd: str
    month_cv: str
    chart: LeveyJennings
    rejected: tuple[RejectedRun, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class QcAction:
    """Something a person or the lab must answer for: a lock released by override, a control
    result kept in the QC queue, a patient-based alarm."""

    when: str
    instrument: str
    test_code: str
    what: str  # "lock override", "corrective action", "QC queue", "patient-based alarm"
    by: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class QcReport:
    lab_name: str
    month: str  # "November 2026"
    printed: str
    sections: tuple[QcReportSection, ...]
    note: str = ""
    actions: tuple[QcAction, ...] = ()


def render_qc_report(report: QcReport) -> bytes:
    fonts = load_fonts()
    body = ParagraphStyle("body", fontName=fonts.regular, fontSize=9, leading=11)
    head = ParagraphStyle("head", fontName=fonts.bold, fontSize=14, leading=18)
    section_head = ParagraphStyle("section", fontName=fonts.bold, fontSize=10.5, leading=13)
    small = ParagraphStyle("small", fontName=fonts.regular, fontSize=7.5, leading=9)
    story: list[Flowable] = [
        Paragraph(escape(f"{report.lab_name}: internal quality control, {report.month}"), head),
        Paragraph(escape(f"Printed {report.printed}"), small),
        Spacer(1, 4 * mm),
    ]
    if report.note:
        story += [Paragraph(escape(report.note), body), Spacer(1, 3 * mm)]
    if not report.sections:
        story.append(Paragraph("No control results this month.", body))
    for section in report.sections:
        png = levey_jennings_png(section.chart, width=7.2, height=2.5, dpi=150)
        chart = Image(io.BytesIO(png), width=180 * mm, height=180 * mm * 2.5 / 7.2)
        figures = Table(
            [
                ["target", "accepted", "rejected", "mean (month)", "SD (month)", "CV"],
                [
                    section.target,
                    str(section.n_accepted),
                    str(section.n_rejected),
                    section.month_mean,
                    section.month_sd,
                    section.month_cv,
                ],
            ],
            hAlign="LEFT",
        )
        figures.setStyle(
            TableStyle(
                [
                    ("FONT", (0, 0), (-1, -1), fonts.regular, 8),
                    ("FONT", (0, 0), (-1, 0), fonts.bold, 8),
                    ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
                ]
            )
        )
        parts: list[Flowable] = [
            Paragraph(
                escape(
                    f"{section.test_code} on {section.instrument}, level {section.level}: "
                    f"{section.material}, lot {section.lot}"
                ),
                section_head,
            ),
            chart,
            figures,
        ]
        if section.rejected:
            rows = [["rejected run", "value", "rule"]] + [
                [r.when, r.value, r.rules] for r in section.rejected
            ]
            table = Table(rows, hAlign="LEFT")
            table.setStyle(
                TableStyle(
                    [
                        ("FONT", (0, 0), (-1, -1), fonts.regular, 8),
                        ("FONT", (0, 0), (-1, 0), fonts.bold, 8),
                        ("TEXTCOLOR", (2, 1), (2, -1), colors.HexColor("#c00000")),
                    ]
                )
            )
            parts += [Spacer(1, 2 * mm), table]
        story += [KeepTogether(parts), Spacer(1, 6 * mm)]
    story += _actions(report, fonts.regular, fonts.bold, section_head, body, small)
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=f"Internal QC {report.month}",
        author=report.lab_name,
        creator="lab.reports",
        invariant=1,
    )
    document.build(story)
    return buffer.getvalue()


def _actions(
    report: QcReport,
    regular: str,
    bold: str,
    head: ParagraphStyle,
    body: ParagraphStyle,
    small: ParagraphStyle,
) -> list[Flowable]:
    """The month's overrides, QC queue entries and patient-based alarms, oldest first."""
    story: list[Flowable] = [
        Paragraph("Locks, overrides, corrective actions, QC queue and patient-based alarms", head)
    ]
    if not report.actions:
        return [*story, Paragraph("None this month.", body)]
    rows: list[list[Flowable | str]] = [["when", "analyser", "test", "what", "by", "detail"]]
    rows += [
        [a.when, a.instrument, a.test_code, a.what, a.by, Paragraph(escape(a.detail), small)]
        for a in report.actions
    ]
    table = Table(
        rows, hAlign="LEFT", colWidths=[26 * mm, 20 * mm, 12 * mm, 28 * mm, 18 * mm, 76 * mm]
    )
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), regular, 8),
                ("FONT", (0, 0), (-1, 0), bold, 8),
                ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    return [*story, table]
