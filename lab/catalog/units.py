"""Units compared as UCUM units: the one place that decides whether two units are the same
quantity, and how a value in one is written in the other (docs/analysers.md, "Units").

Pure: no database, no I/O. The parsing and the conversion factors come from `ucumvert` (a
grammar of the UCUM specification) on top of `pint` (a maintained units library); nothing here is
a table of units typed by hand. What this module adds is the lab's caution around them:

- the micro sign (U+00B5) and the Greek mu (U+03BC) that analysers print are read as UCUM's
  `u` (`µmol/L` is `umol/L`); nothing else is rewritten;
- UCUM ignores annotations in braces when it compares units (`mL/min` and `mL/min/{1.73_m2}`
  are the same to it); a result in a normalised unit is not the same measurement as one that is
  not, so units whose annotations differ are never treated as the same here;
- a factor is used only when the two units measure the same kind of quantity; a mass
  concentration is never turned into a substance concentration (that needs a molar mass).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

_MICRO = str.maketrans({"\u00b5": "u", "\u03bc": "u"})
_ANNOTATION = re.compile(r"\{[^{}]*\}")
# A numeric result as analysers send it: an optional comparator, a decimal number.
_NUMBER = re.compile(r"^\s*(?P<cmp>[<>]=?)?\s*(?P<num>[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+))\s*$")
_SIGNIFICANT = 12  # digits kept of a converted value (the catalog's decimals round it later)

_lock = threading.Lock()
_registry: Any = None


def _ucum() -> Any:
    """The UCUM registry, built once per process (it takes a second or two)."""
    global _registry
    with _lock:
        if _registry is None:
            from ucumvert import PintUcumRegistry

            _registry = PintUcumRegistry()
        return _registry


def spelling(unit: str) -> str:
    """The unit as UCUM writes it: trimmed, the micro sign read as `u`."""
    return unit.strip().translate(_MICRO)


@lru_cache(maxsize=512)
def ucum_problem(unit: str) -> str | None:
    """None when `unit` is a valid UCUM unit, else what is wrong with it, in a sentence."""
    from ucumvert import InvalidUcumError

    code = spelling(unit)
    if not code:
        return "no unit given"
    registry = _ucum()
    try:
        with _lock:
            registry.from_ucum(code)
    except InvalidUcumError as error:
        first_line = str(error).splitlines()[0] if str(error) else "not UCUM"
        return f"{unit!r} is not a UCUM unit ({first_line.split(': ', 1)[-1]})"
    except Exception as error:  # the grammar accepted it, the registry does not know an atom
        return f"{unit!r} is not a UCUM unit this lab can use ({error})"
    return None


@lru_cache(maxsize=512)
def factor(from_unit: str, to_unit: str) -> Decimal | None:
    """The number a value in `from_unit` is multiplied by to be in `to_unit`; None when the two
    are not the same kind of quantity, differ in annotation, or either is not UCUM."""
    source, target = spelling(from_unit), spelling(to_unit)
    if source == target:
        return Decimal(1)
    if sorted(_ANNOTATION.findall(source)) != sorted(_ANNOTATION.findall(target)):
        return None
    if ucum_problem(source) is not None or ucum_problem(target) is not None:
        return None
    registry = _ucum()
    try:
        with _lock:
            magnitude = registry.from_ucum(source).to(registry.from_ucum(target)).magnitude
    except Exception:  # pint's DimensionalityError and kin: not convertible
        return None
    number = Decimal(format(float(magnitude), f".{_SIGNIFICANT}g"))
    return number if number > 0 else None


def same_unit(a: str, b: str) -> bool:
    """True when a value in `a` needs no change to be read in `b` (`umol/l` and `µmol/L`)."""
    return factor(a, b) == 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """A value written in the catalog's unit, with what was sent when that differs."""

    value: str
    unit: str
    original_value: str = ""  # what the analyser sent, when the unit was not the catalog's own
    original_unit: str = ""

    @property
    def converted(self) -> bool:
        return bool(self.original_unit)


@dataclass(frozen=True, slots=True, kw_only=True)
class NotConvertible:
    """Why a value cannot be read in the catalog's unit (kept for a person to decide): the
    English sentence, and its code with parameters for the pages to say it."""

    reason: str
    code: str = ""
    params: Mapping[str, str] = field(default_factory=dict)


def in_catalog_unit(
    value: str, unit: str | None, *, catalog_unit: str, catalog_ucum: str | None = None
) -> Reading | NotConvertible:
    """`value` in `unit` written in the catalog's unit.

    `catalog_ucum` is the catalog unit's UCUM code when the unit the lab shows is written
    otherwise (the catalog keeps both, e.g. `mIU/L` shown, `m[IU]/L` in UCUM). No unit sent, or
    exactly the catalog's, is taken as it is.
    """
    sent = (unit or "").strip()
    if not sent or sent == catalog_unit.strip():
        return Reading(value=value, unit=catalog_unit)
    target = catalog_ucum or catalog_unit
    multiplier = factor(sent, target)
    if multiplier is None:
        problem = ucum_problem(sent)
        if problem is not None:
            return NotConvertible(
                reason=f"unit {problem}; the catalog's unit is {catalog_unit}",
                code="unit_unknown",
                params={"unit": sent, "catalog_unit": catalog_unit},
            )
        return NotConvertible(
            reason=f"unit {sent} cannot be converted to the catalog's {catalog_unit} "
            "(another kind of quantity, or another annotation)",
            code="unit_not_convertible",
            params={"unit": sent, "catalog_unit": catalog_unit},
        )
    kept = {"original_value": value, "original_unit": sent}
    if multiplier == 1:
        return Reading(value=value, unit=catalog_unit, **kept)
    number = _NUMBER.match(value)
    if number is None:
        return NotConvertible(
            reason=f"value {value!r} in {sent} is not a number, so it cannot be converted to "
            f"{catalog_unit} (factor {multiplier})",
            code="value_not_convertible",
            params={"value": value, "unit": sent, "catalog_unit": catalog_unit},
        )
    try:
        amount = Decimal(number.group("num").replace(",", ".")) * multiplier
    except InvalidOperation:
        return NotConvertible(
            reason=f"value {value!r} cannot be read as a number",
            code="value_not_convertible",
            params={"value": value, "unit": sent, "catalog_unit": catalog_unit},
        )
    written = _plain(amount)
    return Reading(value=f"{number.group('cmp') or ''}{written}", unit=catalog_unit, **kept)


def _plain(amount: Decimal) -> str:
    """A decimal without exponent or trailing zeros, to `_SIGNIFICANT` digits."""
    rounded = Decimal(format(amount, f".{_SIGNIFICANT}g"))
    text = format(rounded, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
