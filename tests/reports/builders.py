"""Sample report input shared by the report tests, and helpers that read the PDFs back."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from pypdf import PdfReader

from lab.reports.types import (
    CumulativeReport,
    CumulativeSample,
    CumulativeTestRow,
    CumulativeValue,
    LabDetails,
    Language,
    OrderDetails,
    PatientDetails,
    ReferenceInterval,
    ResultLine,
    ResultReport,
    SpecimenLabel,
    Verification,
)

# Northern Sami, Skolt Sami and Norwegian letters in one name.
SAMI_FAMILY = "Ŋuolja-Sárá Åsbø"
SAMI_GIVEN = "Máret Ŧiŧi Æsa Đuvdná Čáhppe Šiŋŋá Žoarvi Ǥǥ Ǩǩ Ʒʒ Ǯǯ"
PRINTED_AT = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

LAB = LabDetails(
    name="St. Olavs hospital – Avdeling for medisinsk biokjemi",
    address_lines=("Postboks 3250 Torgarden", "7006 Trondheim"),
    phone="72 57 30 00",
)


def patient(family: str = "Ærøy-Østby", given: str = "Åse Kristin") -> PatientDetails:
    return PatientDetails(
        family_name=family,
        given_name=given,
        identifier="05018712345",
        birth_date=date(1987, 1, 5),
        sex="F",
    )


def specimen_label(
    *,
    accession_number: str = "2611270001",
    family: str = "Ærøy-Østby",
    given: str = "Åse Kristin",
    priority: str = "routine",
    tests: tuple[str, ...] = ("HB", "LPK", "TPK"),
    collected: bool = True,
) -> SpecimenLabel:
    return SpecimenLabel(
        accession_number=accession_number,
        patient=patient(family, given),
        container="EDTA",
        tests=tests,
        priority=priority,  # type: ignore[arg-type]
        collected_at=datetime(2026, 11, 27, 7, 15, tzinfo=UTC) if collected else None,
    )


ORDER = OrderDetails(
    placer_order_number="HP-2026-0042",
    filler_order_number="2611270001",
    ordering_clinician="Ola Normann",
    ordering_location="Medisinsk poliklinikk",
    collected_at=datetime(2026, 11, 27, 7, 15, tzinfo=UTC),
    received_at=datetime(2026, 11, 27, 8, 2, tzinfo=UTC),
)


def result_lines(count: int = 4, *, corrected: bool = False) -> tuple[ResultLine, ...]:
    lines = [
        ResultLine(
            test_name="Hemoglobin",
            value=Decimal("13.50"),
            unit="g/dL",
            reference_interval=ReferenceInterval(low=Decimal("11.7"), high=Decimal("15.3")),
        ),
        ResultLine(
            test_name="Kalium",
            value=Decimal("5.9"),
            unit="mmol/L",
            reference_interval=ReferenceInterval(low=Decimal("3.5"), high=Decimal("5.0")),
            flag="HH",
            status="corrected" if corrected else "final",
            comment="Hemolytisk prøve: tolkes med forsiktighet (K+ < 6 & >5)",
        ),
        ResultLine(
            test_name="CRP",
            value=Decimal("5"),
            comparator="<",
            unit="mg/L",
            reference_interval=ReferenceInterval(high=Decimal("5")),
            status="preliminary",
        ),
        ResultLine(test_name="Kreatinin", value=None, unit="umol/L", status="pending"),
    ]
    while len(lines) < count:
        index = len(lines)
        lines.append(
            ResultLine(
                test_name=f"Analyse {index:03d}",
                value=Decimal(index) / 10,
                unit="mmol/L",
                reference_interval=ReferenceInterval(low=Decimal("1.0"), high=Decimal("9.9")),
                flag="L" if index % 5 == 0 else None,
            )
        )
    return tuple(lines[:count])


def result_report(
    *,
    results: tuple[ResultLine, ...] | None = None,
    language: Language = "nb",
    corrected: bool = False,
    verified: bool = True,
    family: str = "Ærøy-Østby",
    given: str = "Åse Kristin",
) -> ResultReport:
    return ResultReport(
        lab=LAB,
        patient=patient(family, given),
        order=ORDER,
        results=results if results is not None else result_lines(corrected=corrected),
        printed_at=PRINTED_AT,
        verification=Verification(
            verified_by="Kari Nordmann", verified_at=datetime(2026, 11, 27, 8, 50, tzinfo=UTC)
        )
        if verified
        else None,
        language=language,
    )


def cumulative_report(
    *, samples: int, tests: int, language: Language = "nb", per_page: int = 8
) -> CumulativeReport:
    first = datetime(2026, 1, 1, 7, 0, tzinfo=UTC)
    sample_list = tuple(
        CumulativeSample(
            accession_number=f"S{index:04d}", collected_at=first + timedelta(days=index)
        )
        for index in range(samples)
    )
    rows = tuple(
        CumulativeTestRow(
            test_name=f"Analyse {test:03d}",
            unit="mmol/L",
            reference_interval=ReferenceInterval(low=Decimal("3.5"), high=Decimal("5.0")),
            values=tuple(
                CumulativeValue(
                    accession_number=sample.accession_number,
                    value=Decimal(f"{test}.{index % 10}"),
                    flag="H" if test > 5 else None,
                )
                for index, sample in enumerate(sample_list)
                if (index + test) % 3 != 0  # some cells left empty
            ),
        )
        for test in range(tests)
    )
    return CumulativeReport(
        lab=LAB,
        patient=patient(),
        samples=sample_list,
        tests=rows,
        printed_at=PRINTED_AT,
        language=language,
        samples_per_page=per_page,
    )


def read_pdf(pdf: bytes) -> PdfReader:
    assert pdf.startswith(b"%PDF-")
    return PdfReader(io.BytesIO(pdf), strict=True)


def page_texts(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in read_pdf(pdf).pages]
