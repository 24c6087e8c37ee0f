from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.reports import render_cumulative_report
from lab.reports.cumulative import build_cumulative_report
from lab.reports.types import (
    CumulativeReport,
    CumulativeSample,
    CumulativeTestRow,
    CumulativeValue,
    ReportInputError,
)

from .builders import LAB, PRINTED_AT, cumulative_report, page_texts, patient, read_pdf

DATE = re.compile(r"(\d\d)\.(\d\d)\.(\d{4})")


def test_values_flags_intervals_and_units_per_row() -> None:
    pdf = render_cumulative_report(cumulative_report(samples=3, tests=8))
    (text,) = page_texts(pdf)
    for expected in ("Kumulativt svar", "Analyse 007", "3,5–5,0", "mmol/L", "7,1 H", "Side 1 av 1"):
        assert expected in text, expected
    assert "Prøve 1–3 av 3" in text and "nyeste prøve først" in text


def test_page_is_a4_landscape() -> None:
    page = read_pdf(render_cumulative_report(cumulative_report(samples=2, tests=2))).pages[0]
    assert float(page.mediabox.width) == pytest.approx(841.89, abs=0.1)
    assert float(page.mediabox.height) == pytest.approx(595.28, abs=0.1)


def test_columns_run_newest_first() -> None:
    (text,) = page_texts(render_cumulative_report(cumulative_report(samples=5, tests=2)))
    shown = [datetime(int(y), int(m), int(d)) for d, m, y in DATE.findall(text)]
    sample_days = [day for day in shown if day.year == 2026 and day.month == 1]
    assert sample_days == sorted(sample_days, reverse=True) and len(sample_days) == 5
    assert text.index("S0004") < text.index("S0000")


@pytest.mark.parametrize(
    ("samples", "per_page", "groups"), [(8, 8, 1), (9, 8, 2), (20, 8, 3), (20, 5, 4)]
)
def test_columns_are_split_into_groups_each_on_new_pages(
    samples: int, per_page: int, groups: int
) -> None:
    pdf, layout = build_cumulative_report(
        cumulative_report(samples=samples, tests=4, per_page=per_page)
    )
    texts = page_texts(pdf)
    assert len(layout.column_groups) == groups
    assert layout.page_count == len(texts) == groups
    assert [len(group) for group in layout.column_groups][:-1] == [per_page] * (groups - 1)
    for number, (text, group) in enumerate(zip(texts, layout.column_groups, strict=True), start=1):
        assert f"Side {number} av {groups}" in text
        for accession in group:
            assert accession in text
        assert all(f"Analyse {test:03d}" in text for test in range(4))


def test_many_tests_run_over_pages_and_every_row_is_printed_once_per_group() -> None:
    pdf, layout = build_cumulative_report(cumulative_report(samples=12, tests=90))
    texts = page_texts(pdf)
    assert layout.page_count == len(texts)
    assert len(texts) > len(layout.column_groups) == 2
    for number, text in enumerate(texts, start=1):
        assert f"Side {number} av {len(texts)}" in text
    joined = "\n".join(texts)
    for test in range(90):
        assert joined.count(f"Analyse {test:03d}") == 2


def test_english_uses_a_decimal_point() -> None:
    (text,) = page_texts(
        render_cumulative_report(cumulative_report(samples=2, tests=8, language="en"))
    )
    assert "7.1 H" in text and "Page 1 of 1" in text and "newest sample first" in text


def test_report_without_samples_renders() -> None:
    (text,) = page_texts(render_cumulative_report(cumulative_report(samples=0, tests=0)))
    assert "Ingen resultater" in text


def test_inconsistent_input_is_refused() -> None:
    sample = CumulativeSample(accession_number="A1", collected_at=PRINTED_AT)
    with pytest.raises(ReportInputError):
        CumulativeReport(
            lab=LAB,
            patient=patient(),
            samples=(sample,),
            tests=(
                CumulativeTestRow(
                    test_name="HB", values=(CumulativeValue(accession_number="B2", value="x"),)
                ),
            ),
            printed_at=PRINTED_AT,
        )
    with pytest.raises(ReportInputError):
        CumulativeReport(
            lab=LAB, patient=patient(), samples=(sample, sample), tests=(), printed_at=PRINTED_AT
        )
    with pytest.raises(ReportInputError):
        CumulativeSample(accession_number="A1", collected_at=datetime(2026, 1, 1))
    with pytest.raises(ReportInputError):
        CumulativeTestRow(
            test_name="HB",
            values=(
                CumulativeValue(accession_number="A1", value=Decimal(1)),
                CumulativeValue(accession_number="A1", value=Decimal(2)),
            ),
        )


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    samples=st.integers(min_value=0, max_value=20),
    tests=st.integers(min_value=0, max_value=45),
    per_page=st.integers(min_value=1, max_value=12),
    test_name=st.text(max_size=200).filter(lambda name: bool(name.strip())),
    value=st.one_of(
        st.text(max_size=40),
        st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-1e9, max_value=1e9),
    ),
)
def test_any_shape_renders_with_consistent_page_numbers(
    samples: int, tests: int, per_page: int, test_name: str, value: Decimal | str
) -> None:
    base = cumulative_report(samples=samples, tests=tests, per_page=per_page)
    extra = CumulativeTestRow(
        test_name=test_name,
        values=tuple(
            CumulativeValue(accession_number=sample.accession_number, value=value, flag="LL")
            for sample in base.samples[:3]
        ),
    )
    report = CumulativeReport(
        lab=base.lab,
        patient=base.patient,
        samples=base.samples,
        tests=(*base.tests, extra),
        printed_at=datetime(2026, 6, 1, tzinfo=UTC),
        samples_per_page=per_page,
    )
    pdf, layout = build_cumulative_report(report)
    texts = page_texts(pdf)
    assert layout.page_count == len(texts) >= len(layout.column_groups)
    assert f"Side {len(texts)} av {len(texts)}" in texts[-1]
