"""The one check every numeric value passes before it is stored, wherever it came from.

The analyser (ASTM R-4, HL7 OBX-5), the technician's keyboard and the JSON API all call
`check_value`. It answers with a reason instead of raising, so each entry point can answer in
its own way (the unmatched queue with the reason, the form shown again, a 422 naming the field)
and nothing is lost. Refused: text that is not a number, NaN, infinity, exponents that put the
value out of any sane range (`1e400`), more significant digits than any analyser reports, and
negative values of quantities that cannot be negative (concentrations, counts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# No laboratory quantity in any unit the lab uses comes near 10^9 (leukocytes are 10^9/L
# *as the unit*; the number stays small). A value beyond it is a typing or transfer error.
SANE_LIMIT = Decimal("1e9")
# IEEE double carries 15-17 significant digits; analysers report at most 6-8. More is garbage.
MAX_SIGNIFICANT_DIGITS = 15
SMALLEST = Decimal("1e-9")  # below any resolution a laboratory reports (`1e-400`)
COMPARATORS = ("<=", ">=", "<", ">")

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,4})?$")
_NOT_A_NUMBER_WORDS = {
    "nan",
    "+nan",
    "-nan",
    "inf",
    "+inf",
    "-inf",
    "infinity",
    "+infinity",
    "-infinity",
    "snan",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueCheck:
    """`ok` with the value, or not `ok` with a reason a person can act on (and its code, for
    the pages to say it in the reader's language)."""

    ok: bool
    value: Decimal | None = None
    comparator: str | None = None
    reason: str = ""
    code: str = ""


def _refuse(code: str, reason: str) -> ValueCheck:
    return ValueCheck(ok=False, reason=reason, code=code)


def check_value(raw: str | Decimal | int | float, *, allow_negative: bool = False) -> ValueCheck:
    """Check one numeric result value: `5.2`, `5,2` (decimal comma), `<5`, `> 100`, or a number.

    `allow_negative` is for the few quantities that can be below zero (base excess, a
    difference); concentrations and counts cannot.
    """
    comparator: str | None = None
    if isinstance(raw, bool):
        return _refuse("not_a_number", "a result value must be a number, not true/false")
    if isinstance(raw, float):
        if raw != raw or raw in (float("inf"), float("-inf")):
            return _refuse("not_finite", "the value is not a finite number (NaN or infinity)")
        text = repr(raw)
    elif isinstance(raw, int | Decimal):
        text = str(raw)
    else:
        text = raw.strip().replace(" ", "")
        for candidate in COMPARATORS:
            if text.startswith(candidate):
                comparator, text = candidate, text[len(candidate) :]
                break
        text = text.replace(",", ".")
    if not text:
        return _refuse("empty", "the value is empty")
    if text.lower() in _NOT_A_NUMBER_WORDS:
        return _refuse("not_finite", f"{raw!s:.40} is not a finite number (NaN or infinity)")
    if not _NUMBER.match(text):
        return _refuse("not_a_number", f"{raw!s:.40} is not a number (write e.g. 5,2 or <5)")
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern above already refused it
        return _refuse("not_a_number", f"{raw!s:.40} is not a number")
    if not value.is_finite():
        return _refuse("not_finite", f"{raw!s:.40} is not a finite number")
    if abs(value) >= SANE_LIMIT:
        return _refuse(
            "out_of_range", f"{raw!s:.40} is out of any sane range for a laboratory result"
        )
    digits = value.normalize().as_tuple().digits
    if len(digits) > MAX_SIGNIFICANT_DIGITS:
        return _refuse(
            "too_many_digits",
            f"{raw!s:.40} has more than {MAX_SIGNIFICANT_DIGITS} significant digits; "
            "no analyser measures that precisely",
        )
    if not value.is_zero() and abs(value) < SMALLEST:
        return _refuse("too_small", f"{raw!s:.40} is smaller than any analyser resolves")
    if value < 0 and not allow_negative:
        return _refuse("negative", f"{raw!s:.40} is negative; this quantity cannot be below zero")
    if value.is_zero() and value.is_signed():
        value = Decimal(0)
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        value = value.quantize(Decimal(1))  # 1E+2 -> 100, so it is stored and shown plainly
    return ValueCheck(ok=True, value=value, comparator=comparator)
