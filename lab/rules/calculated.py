"""Documents of calculated tests: a versioned TOML text with one `[formula.CODE]` per test.

    [formula.EGFR]
    expression = "142 [mL/min/{1.73_m2}] * ..."
    requires = [
      { condition = "age >= 18", reason = "eGFR is not calculated under 18 years" },
    ]
    decimals = 0
    report_above = 90
    source = "Inker et al., N Engl J Med 2021;385:1737-49"

Refused with the line, the column and the reason when an expression does not parse, names an
unknown test or mixes units; nothing of a refused document is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from lab.errors import FieldProblem
from lab.rules.formula import Formula, FormulaInput, FormulaSyntaxError, check_formula
from lab.rules.ruleset import Problems, RuleSetError, load_toml, number


@dataclass(frozen=True, slots=True, kw_only=True)
class FormulaSet:
    version: int
    formulas: Mapping[str, Formula] = field(default_factory=lambda: MappingProxyType({}))

    def using(self, test_code: str) -> list[Formula]:
        """The formulas that read this test (to create or recalculate when it is recorded)."""
        return [f for f in self.formulas.values() if test_code in f.inputs]


_KEYS = {"expression", "requires", "decimals", "report_above", "report_below", "source", "unit"}


def parse_formulas(
    text: str, *, version: int, known_tests: Mapping[str, FormulaInput]
) -> FormulaSet:
    """`known_tests`: every catalog test with its unit and plausibility limits."""
    document, index = load_toml(text, "formula set")
    problems = Problems(index)
    for key in document:
        if key not in ("kind", "description", "formula"):
            problems.add("", key, "unknown key (known: kind, description, formula)")
    if document.get("kind", "formulas") != "formulas":
        problems.add("", "kind", "this is not a formula set")
    formulas: dict[str, Formula] = {}
    raw = document.get("formula", {})
    if not isinstance(raw, dict):
        problems.add("formula", None, "must be tables like [formula.EGFR]")
        raw = {}
    for code, entry in raw.items():
        table = f"formula.{code}"
        if code not in known_tests:
            problems.add(table, None, f"unknown test {code!r} (not in the catalog)")
            continue
        if not isinstance(entry, dict):
            problems.add(table, None, "must be a table")
            continue
        for key in entry:
            if key not in _KEYS:
                problems.add(table, key, f"unknown key (known: {', '.join(sorted(_KEYS))})")
        expression = entry.get("expression")
        if not isinstance(expression, str) or not expression.strip():
            problems.add(table, "expression", "give the expression as text")
            continue
        requires: list[tuple[str, str]] = []
        for requirement in entry.get("requires", []):
            if (
                not isinstance(requirement, dict)
                or not isinstance(requirement.get("condition"), str)
                or not isinstance(requirement.get("reason"), str)
            ):
                problems.add(table, "requires", "each needs condition and reason as text")
                continue
            requires.append((requirement["condition"], requirement["reason"]))
        decimals = entry.get("decimals", 0)
        if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 6:
            problems.add(table, "decimals", "must be a whole number 0-6")
            decimals = 0
        above = (
            number(problems, table, "report_above", entry["report_above"])
            if ("report_above" in entry)
            else None
        )
        below = (
            number(problems, table, "report_below", entry["report_below"])
            if ("report_below" in entry)
            else None
        )
        unit = entry.get("unit", known_tests[code].unit)
        try:
            formulas[code] = check_formula(
                test_code=code,
                text=expression,
                unit=unit if isinstance(unit, str) else None,
                inputs=known_tests,
                requires=tuple(requires),
                decimals=decimals,
                report_above=above,
                report_below=below,
                source=str(entry.get("source", "")),
            )
        except FormulaSyntaxError as exc:
            line = index.line(table, "expression")
            problems.found.append(
                FieldProblem(
                    f"line {line}",
                    f"{table}: column {exc.where.column}"
                    + (f" (line {exc.where.line} of the expression)" if exc.where.line > 1 else "")
                    + f": {exc.reason}",
                )
            )
    problems.raise_if_any("formula set")
    return FormulaSet(version=version, formulas=MappingProxyType(formulas))


__all__ = ["FormulaSet", "RuleSetError", "parse_formulas"]
