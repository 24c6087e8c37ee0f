"""The page formats (Norwegian date, time and decimal comma) and the text catalogue."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from lab.web import i18n
from lab.web.i18n import translate
from lab.web.templating import day, environment, number, when


def test_times_are_shown_in_oslo_time() -> None:
    assert when(datetime(2026, 11, 27, 7, 15, tzinfo=UTC)) == "27.11.2026 08:15"  # CET
    assert when(datetime(2026, 7, 1, 6, 5, tzinfo=UTC)) == "01.07.2026 08:05"  # CEST
    assert when(None) == ""
    assert day(date(1984, 3, 15)) == "15.03.1984"


def test_numbers_use_the_decimal_comma_and_keep_their_precision() -> None:
    assert number(Decimal("4.50")) == "4,50"
    assert number(Decimal("1E+1")) == "10"
    assert number(Decimal("-0.3")) == "\u22120,3"
    assert number(None) == ""


@settings(max_examples=200)
@given(st.decimals(allow_nan=False, allow_infinity=False, places=4))
def test_decimal_comma_reads_back_to_the_same_number(value: Decimal) -> None:
    shown = number(value)
    assert "." not in shown and "E" not in shown
    assert Decimal(shown.replace("\u2212", "-").replace(",", ".")) == value


def test_autoescape_is_on() -> None:
    page = environment.from_string("{{ name }}").render(name="<script>x</script>")
    assert "<script>" not in page


def test_translate_fills_placeholders_and_survives_unknown_keys_outside_tests() -> None:
    assert translate("nb", "notice.verified_many", count=3) == "3 resultater er godkjent."
    assert translate("en", "notice.verified_many", count=3) == "3 results verified."
    i18n.mode.strict = False  # as in production: a missing text never breaks a page
    assert translate("nb", "status.some_new_state") == "some new state"
