"""Printed output of the lab: specimen labels, result reports and cumulative reports.

Pure rendering: the services convert their models to the frozen dataclasses in
`lab.reports.types`, and every renderer returns PDF bytes. Nothing here reads a clock, a
database or the network; the only files read are the fonts (see `lab.reports.fonts`).
"""

from lab.reports.cumulative import render_cumulative_report
from lab.reports.labels import DEFAULT_STOCK, LABEL_STOCKS, render_labels
from lab.reports.result_report import render_result_report
from lab.reports.types import (
    CumulativeReport,
    CumulativeSample,
    CumulativeTestRow,
    CumulativeValue,
    LabDetails,
    LabelDoesNotFitError,
    LabelStock,
    OrderDetails,
    PatientDetails,
    ReferenceInterval,
    ReportError,
    ReportInputError,
    ResultLine,
    ResultReport,
    SpecimenLabel,
    Verification,
)

__all__ = [
    "DEFAULT_STOCK",
    "LABEL_STOCKS",
    "CumulativeReport",
    "CumulativeSample",
    "CumulativeTestRow",
    "CumulativeValue",
    "LabDetails",
    "LabelDoesNotFitError",
    "LabelStock",
    "OrderDetails",
    "PatientDetails",
    "ReferenceInterval",
    "ReportError",
    "ReportInputError",
    "ResultLine",
    "ResultReport",
    "SpecimenLabel",
    "Verification",
    "render_cumulative_report",
    "render_labels",
    "render_result_report",
]
