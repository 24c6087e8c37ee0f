from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.reports.formatting import (
    TEXTS,
    format_date,
    format_datetime,
    format_decimal,
    format_page_number,
    format_patient_identifier,
    format_patient_name,
    format_reference_interval,
    format_value,
)
from lab.reports.types import ReferenceInterval, ReportInputError


@pytest.mark.parametrize(
    ("moment", "shown"),
    [
        (datetime(2026, 11, 27, 7, 15, tzinfo=UTC), "27.11.2026 08:15"),  # CET, UTC+1
        (datetime(2026, 7, 1, 22, 30, tzinfo=UTC), "02.07.2026 00:30"),  # CEST crosses midnight
        (datetime(2026, 12, 31, 23, 0, tzinfo=UTC), "01.01.2027 00:00"),  # and the year
        # Spring forward, last Sunday of March: 01:00 UTC is 03:00 CEST (02:xx never exists).
        (datetime(2026, 3, 29, 0, 59, tzinfo=UTC), "29.03.2026 01:59"),
        (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), "29.03.2026 03:00"),
        # Fall back, last Sunday of October: 02:30 local happens twice.
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "25.10.2026 02:30"),
        (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "25.10.2026 02:30"),
        # Any aware input works, not only UTC.
        (datetime(2026, 11, 27, 3, 15, tzinfo=timezone(timedelta(hours=-4))), "27.11.2026 08:15"),
    ],
)
def test_times_are_shown_in_oslo(moment: datetime, shown: str) -> None:
    assert format_datetime(moment) == shown


def test_naive_time_is_refused() -> None:
    with pytest.raises(ReportInputError):
        format_datetime(datetime(2026, 11, 27, 8, 15))


def test_birth_date() -> None:
    assert format_date(date(1987, 1, 5)) == "05.01.1987"
    assert format_date(date(1, 1, 1)) == "01.01.0001"


@pytest.mark.parametrize(
    ("value", "nb", "en"),
    [
        (Decimal("4.50"), "4,50", "4.50"),  # the analyser's precision is kept
        (Decimal("13"), "13", "13"),
        (Decimal("-2.5"), "-2,5", "-2.5"),
        (Decimal("-0.0"), "0,0", "0.0"),
        (Decimal("1E+3"), "1000", "1000"),  # never an exponent
        (Decimal("1.5E-2"), "0,015", "0.015"),
        (Decimal("12500"), "12500", "12500"),  # no thousands separator
    ],
)
def test_decimal_comma_in_bokmal_point_in_english(value: Decimal, nb: str, en: str) -> None:
    assert format_decimal(value, "nb") == nb
    assert format_decimal(value, "en") == en


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_non_finite_numbers_are_refused(value: Decimal) -> None:
    with pytest.raises(ReportInputError):
        format_decimal(value, "nb")


@settings(max_examples=300)
@given(st.decimals(allow_nan=False, allow_infinity=False, places=None))
def test_decimal_text_reads_back_as_the_same_number(value: Decimal) -> None:
    nb, en = format_decimal(value, "nb"), format_decimal(value, "en")
    assert "." not in nb and "," not in en
    assert "E" not in en.upper()
    assert Decimal(nb.replace(",", ".")) == value
    assert Decimal(en) == value


def test_value_with_comparator_and_text_values() -> None:
    assert format_value(Decimal("0.5"), "<", "nb") == "<0,5"
    assert format_value(Decimal("90"), ">=", "en") == "≥90"
    assert format_value("Positiv", None, "nb") == "Positiv"
    assert format_value(None, None, "nb") == ""


def test_reference_intervals() -> None:
    both = ReferenceInterval(low=Decimal("3.5"), high=Decimal("5.0"))
    assert format_reference_interval(both, "nb") == "3,5–5,0"
    assert format_reference_interval(both, "en") == "3.5–5.0"
    assert format_reference_interval(ReferenceInterval(high=Decimal("5")), "nb") == "< 5"
    assert format_reference_interval(ReferenceInterval(low=Decimal("60")), "nb") == "> 60"
    assert format_reference_interval(ReferenceInterval(text="Negativ"), "nb") == "Negativ"
    assert format_reference_interval(None, "nb") == ""
    with pytest.raises(ReportInputError):
        ReferenceInterval(low=Decimal(5), high=Decimal(3))
    with pytest.raises(ReportInputError):
        ReferenceInterval()


def test_patient_identifier_is_split_after_the_date_part() -> None:
    assert format_patient_identifier("05018712345") == "050187 12345"
    assert format_patient_identifier("050187 12345") == "050187 12345"
    assert format_patient_identifier("45018712345") == "450187 12345"  # D-number
    assert format_patient_identifier("ABC-123") == "ABC-123"  # other identifiers as they are
    assert format_patient_identifier("٠٥٠١٨٧١٢٣٤٥") == "٠٥٠١٨٧١٢٣٤٥"  # non-ASCII digits: untouched


def test_patient_name_family_first() -> None:
    assert format_patient_name("Ærøy-Østby", "Åse  Kristin") == "Ærøy-Østby, Åse Kristin"
    assert format_patient_name("Ŋuolja", "") == "Ŋuolja"


def test_page_numbers_in_both_languages() -> None:
    assert format_page_number(1, 2, "nb") == "Side 1 av 2"
    assert format_page_number(3, 3, "en") == "Page 3 of 3"
    assert format_page_number(1, None, "nb") == "Side 1 av ?"


def test_both_languages_name_every_status_and_sex() -> None:
    assert TEXTS["nb"].status_names["preliminary"] == "Foreløpig"
    assert TEXTS["nb"].status_names["corrected"] == "Korrigert"
    for texts in TEXTS.values():
        assert set(texts.status_names) == {
            "pending",
            "preliminary",
            "final",
            "corrected",
            "cannot_be_done",
        }
        assert set(texts.sex_names) == {"F", "M", "O", "U"}


def test_units_as_norwegian_reports_print_them() -> None:
    from lab.reports.formatting import display_unit

    assert display_unit("10*9/L") == "×10⁹/L"
    assert display_unit("10*12/L") == "×10¹²/L"
    assert display_unit("umol/L") == "µmol/L"
    assert display_unit("10*3/uL") == "×10³/µL"
    assert display_unit("mL/min/{1.73_m2}") == "mL/min/1,73 m²"
    assert display_unit("mL/min/{1.73_m2}", "en") == "mL/min/1.73 m²"
    for unchanged in ("mmol/L", "g/dL", "mg/L", "U/L", "mIU/L", "pmol/L", ""):
        assert display_unit(unchanged) == unchanged
    assert display_unit(None) == ""


def test_the_clinician_by_name_and_hpr_number() -> None:
    from lab.reports.formatting import display_clinician

    assert display_clinician("9144889^Lien^Lise^^^^^^HPR") == "Lise Lien (HPR 9144889)"
    assert display_clinician("9144889^Lien^Lise^HPR") == "Lise Lien (HPR 9144889)"
    assert display_clinician("9144889^Lien^Lise") == "Lise Lien (9144889)"
    assert display_clinician("Dr. Hansen, legevakten") == "Dr. Hansen, legevakten"
    assert display_clinician("") == ""
