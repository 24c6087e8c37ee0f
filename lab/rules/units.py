"""Units of measure as the formula engine checks them: products of UCUM atoms with exponents.

`umol/L` is umol^1 * L^-1, `mL/min/{1.73_m2}` is mL * min^-1 * {1.73_m2}^-1 (UCUM: `/` divides
what stands to its left, `.` multiplies). Atoms are compared as written after UCUM
normalisation of the micro sign and the litre (`µmol/l` = `umol/L`); no conversion factors are
applied: a formula that mixes umol/L and mg/dL must say how it converts, with a constant that
carries its own unit (`KREA / 88.4 [umol/L] * 1 [mg/dL]`), so every conversion is visible.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

Unit = Mapping[str, int]

DIMENSIONLESS: Unit = MappingProxyType({})


class UnitSyntaxError(ValueError):
    pass


def normalise_atom(atom: str) -> str:
    atom = atom.replace("µ", "u").replace("μ", "u")
    if atom.endswith("l") and atom[:-1] in ("", "m", "u", "n", "d", "c", "p", "f"):
        atom = atom[:-1] + "L"  # UCUM accepts l and L for the litre
    return atom


def parse_unit(text: str | None) -> Unit:
    """`1` or empty is dimensionless; otherwise a product of atoms."""
    if text is None:
        return DIMENSIONLESS
    text = text.strip()
    if text in ("", "1"):
        return DIMENSIONLESS
    exponents: dict[str, int] = {}
    sign = 1
    atom = ""
    depth = 0
    for char in text + "\0":
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth < 0:
                raise UnitSyntaxError(f"unbalanced braces in unit {text!r}")
        if depth == 0 and char in "/.\0":
            if not atom:
                raise UnitSyntaxError(f"empty unit part in {text!r}")
            name = normalise_atom(atom)
            if name != "1":
                exponents[name] = exponents.get(name, 0) + sign
            atom = ""
            sign = -1 if char == "/" else 1
            continue
        atom += char
    if depth != 0:
        raise UnitSyntaxError(f"unbalanced braces in unit {text!r}")
    return MappingProxyType({name: power for name, power in exponents.items() if power})


def multiply(left: Unit, right: Unit, power: int = 1) -> Unit:
    result = dict(left)
    for name, exponent in right.items():
        result[name] = result.get(name, 0) + exponent * power
    return MappingProxyType({name: exponent for name, exponent in result.items() if exponent})


def scale(unit: Unit, power: int) -> Unit:
    return MappingProxyType({name: exponent * power for name, exponent in unit.items() if power})


def same(left: Unit, right: Unit) -> bool:
    return dict(left) == dict(right)


def unit_text(unit: Unit) -> str:
    if not unit:
        return "1 (no unit)"
    top = [f"{n}^{e}" if e != 1 else n for n, e in sorted(unit.items()) if e > 0]
    bottom = [f"{n}^{-e}" if e != -1 else n for n, e in sorted(unit.items()) if e < 0]
    return (".".join(top) or "1") + "".join(f"/{b}" for b in bottom)
