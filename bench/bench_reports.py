"""How long printing takes: labels per second, result and cumulative reports per second."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial

from lab.reports import (
    LABEL_STOCKS,
    CumulativeReport,
    CumulativeSample,
    CumulativeTestRow,
    CumulativeValue,
    LabDetails,
    OrderDetails,
    PatientDetails,
    ReferenceInterval,
    ResultLine,
    ResultReport,
    SpecimenLabel,
    Verification,
    render_cumulative_report,
    render_labels,
    render_result_report,
)

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
PATIENT = PatientDetails(
    family_name="Ŋuolja-Sárá Åsbø",
    given_name="Máret Ŧiŧi",
    identifier="05018712345",
    birth_date=date(1987, 1, 5),
    sex="F",
)
LAB = LabDetails(name="Avdeling for medisinsk biokjemi", address_lines=("7006 Trondheim",))


def _timed(action: Callable[[], bytes], repeats: int) -> tuple[float, int]:
    action()  # fonts registered, caches warm
    started = time.perf_counter()
    size = 0
    for _ in range(repeats):
        size = len(action())
    return (time.perf_counter() - started) / repeats, size


def _result_report(results: int) -> ResultReport:
    return ResultReport(
        lab=LAB,
        patient=PATIENT,
        order=OrderDetails(
            placer_order_number="HP-1",
            filler_order_number="2611270001",
            ordering_clinician="Ola Normann",
            ordering_location="Medisinsk poliklinikk",
            collected_at=NOW,
            received_at=NOW,
        ),
        results=tuple(
            ResultLine(
                test_name=f"Analyse {index}",
                value=Decimal("4.25"),
                unit="mmol/L",
                reference_interval=ReferenceInterval(low=Decimal("3.5"), high=Decimal("5.0")),
                flag="H" if index % 4 == 0 else None,
                comment="Hemolytisk" if index % 7 == 0 else None,
            )
            for index in range(results)
        ),
        printed_at=NOW,
        verification=Verification(verified_by="Kari Nordmann", verified_at=NOW),
    )


def _cumulative(samples: int, tests: int) -> CumulativeReport:
    sample_list = tuple(
        CumulativeSample(accession_number=f"S{index:05d}", collected_at=NOW - timedelta(days=index))
        for index in range(samples)
    )
    return CumulativeReport(
        lab=LAB,
        patient=PATIENT,
        samples=sample_list,
        tests=tuple(
            CumulativeTestRow(
                test_name=f"Analyse {test}",
                unit="mmol/L",
                reference_interval=ReferenceInterval(high=Decimal("5")),
                values=tuple(
                    CumulativeValue(accession_number=s.accession_number, value=Decimal("4.1"))
                    for s in sample_list
                ),
            )
            for test in range(tests)
        ),
        printed_at=NOW,
    )


def main() -> None:
    labels = [
        SpecimenLabel(
            accession_number=f"26112{index:05d}",
            patient=PATIENT,
            container="EDTA",
            tests=("HB", "LPK", "TPK"),
            priority="stat" if index % 10 == 0 else "routine",
            collected_at=NOW,
        )
        for index in range(100)
    ]
    stock = LABEL_STOCKS["tube-50x25mm"]
    seconds, size = _timed(lambda: render_labels(labels, stock=stock), 5)
    print(f"labels: {100 / seconds:8.0f} labels/s  ({seconds * 10:.2f} ms each, 100 per PDF)")
    print(f"        {size / 100:8.0f} bytes per label page in a 100-label PDF")
    seconds, size = _timed(lambda: render_labels(labels[:1], stock=stock), 20)
    print(
        f"        {seconds * 1000:8.1f} ms for a one-label PDF ({size} bytes, font subset included)"
    )
    for results in (10, 150):
        report = _result_report(results)
        seconds, size = _timed(partial(render_result_report, report), 5)
        print(
            f"result report, {results:3d} results: {seconds * 1000:7.1f} ms, {size} bytes "
            "(laid out twice for 'Side n av N')"
        )
    for samples, tests in ((8, 10), (40, 60)):
        cumulative = _cumulative(samples, tests)
        seconds, size = _timed(partial(render_cumulative_report, cumulative), 3)
        print(
            f"cumulative, {samples} samples x {tests} tests: {seconds * 1000:7.1f} ms, {size} bytes"
        )
