"""Calculated tests: a small typed expression language, parsed with lark, evaluated by us.

Nothing here hands user text to Python's `eval`, `exec` or `compile`. The text is parsed by lark
(a pure-Python parsing library: it builds a tree from *our* grammar and never runs the text),
turned into the frozen nodes below, checked, and evaluated by one `match` over those nodes,
which knows arithmetic, comparison, logic and six functions and nothing else.

The language, over the specimen's results and the patient at collection:

    142 [mL/min/{1.73_m2}] * min(scr / k, 1) ^ a * max(scr / k, 1) ^ -1.200 * 0.9938 ^ age
    KREA                        a result of the same specimen, in the catalog unit of KREA
    age, age_days, sex          whole years and days of age at collection; sex "F", "M", "O", "U"
    88.4 [umol/L]               a constant with its UCUM unit (without: a plain number)
    + - * / ^  min max abs ln log exp  if(condition, then, else)
    < <= > >= == !=  and or not

Checked when saved, with the line, column and reason: syntax, unknown tests and names, unit
mismatches (adding mg/dL to umol/L, a result that is not in the calculated test's unit,
logarithms and powers of quantities with units), and any division, logarithm or negative power
whose argument *can* be zero or negative for values the inputs can take (interval arithmetic
over each input's plausibility limits: a concentration without limits may be 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from lark import Lark, Token, Transformer, UnexpectedInput, v_args
from lark.tree import Meta

from lab.errors import FieldProblem
from lab.rules.ruleset import RuleSetError
from lab.rules.units import (
    DIMENSIONLESS,
    Unit,
    UnitSyntaxError,
    multiply,
    parse_unit,
    same,
    scale,
    unit_text,
)

GRAMMAR = r"""
?start: expr
?expr: disj
?disj: conj | disj "or" conj -> or_
?conj: negation | conj "and" negation -> and_
?negation: comparison | "not" negation -> not_
?comparison: sum | sum COMPARE sum -> compare
?sum: product | sum ADD product -> arith
?product: signed | product MUL signed -> arith
?signed: power | "-" signed -> negate
?power: atom | atom "^" signed -> power
?atom: NUMBER [UNIT] -> number
     | NAME "(" [expr ("," expr)*] ")" -> call
     | NAME -> name
     | STRING -> text
     | "(" expr ")"
COMPARE: "<=" | ">=" | "==" | "!=" | "<" | ">"
ADD: "+" | "-"
MUL: "*" | "/"
NAME: /(?!(and|or|not)\b)[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /\d+(\.\d+)?/
UNIT: /\[[^\[\]]+\]/
STRING: /"[A-Za-z]{0,3}"/
%import common.WS
%ignore WS
"""

_PARSER = Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=True)

FUNCTIONS = {"min": 2, "max": 2, "abs": 1, "ln": 1, "log": 1, "exp": 1, "if": 3}
VARIABLES = {"age", "age_days", "sex"}
SEXES = {"F", "M", "O", "U"}
MAX_TEXT = 2000


# ---------------------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True)
class Where:
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Number:
    value: float
    unit: Unit
    at: Where


@dataclass(frozen=True, slots=True)
class Name:
    name: str
    at: Where


@dataclass(frozen=True, slots=True)
class Text:
    value: str
    at: Where


@dataclass(frozen=True, slots=True)
class Arith:
    op: str  # + - * /
    left: Node
    right: Node
    at: Where


@dataclass(frozen=True, slots=True)
class Power:
    base: Node
    exponent: Node
    at: Where


@dataclass(frozen=True, slots=True)
class Negate:
    operand: Node
    at: Where


@dataclass(frozen=True, slots=True)
class Call:
    function: str
    arguments: tuple[Node, ...]
    at: Where


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Node
    right: Node
    at: Where


@dataclass(frozen=True, slots=True)
class Logic:
    op: str  # and / or / not
    operands: tuple[Node, ...]
    at: Where


Node = Number | Name | Text | Arith | Power | Negate | Call | Compare | Logic


def _where(meta: Meta | Token) -> Where:
    return Where(getattr(meta, "line", 1) or 1, getattr(meta, "column", 1) or 1)


class FormulaSyntaxError(ValueError):
    def __init__(self, where: Where, reason: str) -> None:
        super().__init__(f"line {where.line}, column {where.column}: {reason}")
        self.where = where
        self.reason = reason


@v_args(meta=True)
class _Build(Transformer[Token, Node]):
    def number(self, meta: Meta, children: list[Token | None]) -> Node:
        digits, unit = children
        try:
            parsed = parse_unit(str(unit)[1:-1]) if unit is not None else DIMENSIONLESS
        except UnitSyntaxError as exc:
            raise FormulaSyntaxError(_where(meta), str(exc)) from None
        return Number(float(str(digits)), parsed, _where(meta))

    def name(self, meta: Meta, children: list[Token]) -> Node:
        return Name(str(children[0]), _where(meta))

    def text(self, meta: Meta, children: list[Token]) -> Node:
        return Text(str(children[0])[1:-1], _where(meta))

    def call(self, meta: Meta, children: list[Token | Node | None]) -> Node:
        function = str(children[0])
        arguments = tuple(child for child in children[1:] if child is not None)
        return Call(function, arguments, _where(meta))  # type: ignore[arg-type]

    def arith(self, meta: Meta, children: list[Node | Token]) -> Node:
        left, op, right = children
        return Arith(str(op), left, right, _where(meta))  # type: ignore[arg-type]

    def compare(self, meta: Meta, children: list[Node | Token]) -> Node:
        left, op, right = children
        return Compare(str(op), left, right, _where(meta))  # type: ignore[arg-type]

    def power(self, meta: Meta, children: list[Node]) -> Node:
        return Power(children[0], children[1], _where(meta))

    def negate(self, meta: Meta, children: list[Node]) -> Node:
        return Negate(children[0], _where(meta))

    def or_(self, meta: Meta, children: list[Node]) -> Node:
        return Logic("or", tuple(children), _where(meta))

    def and_(self, meta: Meta, children: list[Node]) -> Node:
        return Logic("and", tuple(children), _where(meta))

    def not_(self, meta: Meta, children: list[Node]) -> Node:
        return Logic("not", tuple(children), _where(meta))


def parse_expression(text: str) -> Node:
    """The tree of an expression, or FormulaSyntaxError with the line and column."""
    if len(text) > MAX_TEXT:
        raise FormulaSyntaxError(Where(1, 1), f"longer than {MAX_TEXT} characters")
    try:
        tree = _PARSER.parse(text)
    except UnexpectedInput as exc:
        where = Where(getattr(exc, "line", 1) or 1, getattr(exc, "column", 1) or 1)
        found = getattr(exc, "token", None) or getattr(exc, "char", None)
        at_end = found is None or getattr(found, "type", "") == "$END"
        if at_end:  # point just past the last character, where something is missing
            lines = text.rstrip().splitlines() or [""]
            where = Where(len(lines), len(lines[-1]) + 1)
        reason = "unexpected end of the formula" if at_end else f"unexpected {str(found)!r}"
        raise FormulaSyntaxError(where, reason) from None
    built = _Build().transform(tree)
    if isinstance(built, Token):  # pragma: no cover - the grammar always builds a node
        raise FormulaSyntaxError(Where(1, 1), "not an expression")
    return built


# ---------------------------------------------------------------------------- checking


@dataclass(frozen=True, slots=True, kw_only=True)
class FormulaInput:
    """What the checker knows of an input test: its unit and the values it can take."""

    unit: str | None
    low: float | None = None  # plausibility limits; None: 0 (a concentration) / unbounded
    high: float | None = None


@dataclass(frozen=True, slots=True)
class Kind:
    """The type of an expression: a number with a unit and a range, a truth value, or a sex."""

    kind: str  # "number", "bool", "sex", "text"
    unit: Unit = field(default_factory=lambda: DIMENSIONLESS)
    low: float = -math.inf
    high: float = math.inf


_BOOL = Kind("bool")


class _Checker:
    def __init__(self, inputs: Mapping[str, FormulaInput]) -> None:
        self.inputs = inputs
        self.used: set[str] = set()

    def fail(self, where: Where, reason: str) -> FormulaSyntaxError:
        return FormulaSyntaxError(where, reason)

    def check(self, node: Node) -> Kind:
        match node:
            case Number(value=value, unit=unit):
                return Kind("number", unit, value, value)
            case Text(value=value, at=at):
                if value not in SEXES:
                    raise self.fail(at, f'"{value}" is not a sex code (F, M, O, U)')
                return Kind("text")
            case Name(name=name, at=at):
                return self._name(name, at)
            case Negate(operand=operand, at=at):
                inner = self._number(operand, "-")
                return Kind("number", inner.unit, -inner.high, -inner.low)
            case Arith(op=op, left=left, right=right, at=at):
                return self._arith(op, self._number(left, op), self._number(right, op), at)
            case Power(base=base, exponent=exponent, at=at):
                return self._power(self._number(base, "^"), exponent, at)
            case Call(function=function, arguments=arguments, at=at):
                return self._call(function, arguments, at)
            case Compare(op=op, left=left, right=right, at=at):
                left_kind, right_kind = self.check(left), self.check(right)
                if {left_kind.kind, right_kind.kind} == {"sex", "text"}:
                    if op not in ("==", "!="):
                        raise self.fail(at, "sex can only be compared with == or !=")
                    return _BOOL
                if left_kind.kind != "number" or right_kind.kind != "number":
                    raise self.fail(at, f"{op} compares two numbers (or sex with a sex code)")
                if not same(left_kind.unit, right_kind.unit):
                    raise self.fail(at, _mismatch(op, left_kind.unit, right_kind.unit))
                return _BOOL
            case Logic(op=op, operands=operands, at=at):
                for operand in operands:
                    if self.check(operand).kind != "bool":
                        raise self.fail(at, f"{op} takes conditions (true/false)")
                return _BOOL
        raise self.fail(Where(1, 1), "not an expression")  # pragma: no cover

    def _number(self, node: Node, op: str) -> Kind:
        kind = self.check(node)
        if kind.kind != "number":
            raise self.fail(node.at, f"{op} needs a number here, not a {kind.kind}")
        return kind

    def _name(self, name: str, at: Where) -> Kind:
        if name == "age":
            return Kind("number", DIMENSIONLESS, 0, 150)
        if name == "age_days":
            return Kind("number", DIMENSIONLESS, 0, 150 * 366)
        if name == "sex":
            return Kind("sex")
        found = self.inputs.get(name)
        if found is None:
            raise self.fail(at, f"unknown test or name {name!r}")
        try:
            unit = parse_unit(found.unit)
        except UnitSyntaxError as exc:
            raise self.fail(at, f"{name}: {exc}") from None
        self.used.add(name)
        low = found.low if found.low is not None else 0.0  # results are never negative
        high = found.high if found.high is not None else math.inf
        return Kind("number", unit, low, high)

    def _arith(self, op: str, left: Kind, right: Kind, at: Where) -> Kind:
        if op in "+-":
            if not same(left.unit, right.unit):
                raise self.fail(at, _mismatch(op, left.unit, right.unit))
            if op == "+":
                return Kind("number", left.unit, left.low + right.low, left.high + right.high)
            return Kind("number", left.unit, left.low - right.high, left.high - right.low)
        if op == "*":
            return Kind("number", multiply(left.unit, right.unit), *_product(left, right))
        if right.low <= 0 <= right.high:
            raise self.fail(at, "division by a value that can be zero")
        inverse = Kind("number", right.unit, 1 / right.high, 1 / right.low)
        return Kind("number", multiply(left.unit, right.unit, -1), *_product(left, inverse))

    def _power(self, base: Kind, exponent_node: Node, at: Where) -> Kind:
        exponent = self._number(exponent_node, "^")
        if exponent.unit:
            raise self.fail(at, "an exponent must have no unit")
        whole = exponent.low == exponent.high and float(exponent.low).is_integer()
        if base.unit and not whole:
            raise self.fail(at, "a quantity with a unit can only be raised to a whole number")
        unit = scale(base.unit, int(exponent.low)) if base.unit else DIMENSIONLESS
        if not whole and base.low < 0:
            raise self.fail(
                at, "a power with a fractional exponent of a value that can be negative"
            )
        if exponent.low < 0 and base.low <= 0 <= base.high:
            raise self.fail(at, "a negative power of a value that can be zero")
        corners = [
            _safe_pow(b, e) for b in (base.low, base.high) for e in (exponent.low, exponent.high)
        ]
        finite = [c for c in corners if not math.isnan(c)]
        low = min(finite) if finite else -math.inf
        high = max(finite) if finite else math.inf
        if base.low < 0 < base.high or (exponent.low < 0 < exponent.high):
            low, high = min(low, 0.0), max(high, 1.0)  # a sign change or 0 exponent inside
        return Kind("number", unit, low, high)

    def _call(self, function: str, arguments: tuple[Node, ...], at: Where) -> Kind:
        arity = FUNCTIONS.get(function)
        if arity is None:
            raise self.fail(at, f"unknown function {function!r} (known: {', '.join(FUNCTIONS)})")
        if len(arguments) != arity:
            raise self.fail(at, f"{function} takes {arity} arguments, not {len(arguments)}")
        if function == "if":
            if self.check(arguments[0]).kind != "bool":
                raise self.fail(arguments[0].at, "the first argument of if is a condition")
            then, other = self._number(arguments[1], "if"), self._number(arguments[2], "if")
            if not same(then.unit, other.unit):
                raise self.fail(at, _mismatch("if", then.unit, other.unit))
            return Kind("number", then.unit, min(then.low, other.low), max(then.high, other.high))
        kinds = [self._number(argument, function) for argument in arguments]
        if function in ("min", "max"):
            left, right = kinds
            if not same(left.unit, right.unit):
                raise self.fail(at, _mismatch(function, left.unit, right.unit))
            pick = min if function == "min" else max
            return Kind("number", left.unit, pick(left.low, right.low), pick(left.high, right.high))
        (only,) = kinds
        if function == "abs":
            low = 0.0 if only.low <= 0 <= only.high else min(abs(only.low), abs(only.high))
            return Kind("number", only.unit, low, max(abs(only.low), abs(only.high)))
        if only.unit:
            raise self.fail(at, f"{function} takes a plain number, not {unit_text(only.unit)}")
        if function == "exp":
            return Kind("number", DIMENSIONLESS, _safe_exp(only.low), _safe_exp(only.high))
        if only.low <= 0:
            raise self.fail(at, f"{function} of a value that can be zero or negative")
        log = math.log if function == "ln" else math.log10
        return Kind("number", DIMENSIONLESS, log(only.low), log(only.high))


def _product(left: Kind, right: Kind) -> tuple[float, float]:
    corners = []
    for a in (left.low, left.high):
        for b in (right.low, right.high):
            corners.append(0.0 if (a == 0 or b == 0) else a * b)
    return min(corners), max(corners)


def _safe_pow(base: float, exponent: float) -> float:
    try:
        if base == 0 and exponent < 0:
            return math.inf
        if math.isinf(base) or math.isinf(exponent):
            return math.inf if base > 1 or base == math.inf else 0.0
        return float(base**exponent) if base >= 0 or exponent.is_integer() else math.nan
    except OverflowError:
        return math.inf


def _safe_exp(value: float) -> float:
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf


def _mismatch(op: str, left: Unit, right: Unit) -> str:
    return f"unit mismatch in {op}: {unit_text(left)} and {unit_text(right)}"


# ---------------------------------------------------------------------------- formulas


@dataclass(frozen=True, slots=True, kw_only=True)
class Requirement:
    condition: Node
    reason: str  # shown when the calculated test is not created


@dataclass(frozen=True, slots=True, kw_only=True)
class Formula:
    """A calculated test: its expression, checked against the catalog when it was saved."""

    test_code: str
    text: str
    expression: Node
    unit: str | None
    inputs: tuple[str, ...]  # test codes it reads from the specimen
    requires: tuple[Requirement, ...] = ()
    decimals: int = 0
    report_above: Decimal | None = None  # reported as ">90" above this
    report_below: Decimal | None = None
    source: str = ""


def check_formula(
    *,
    test_code: str,
    text: str,
    unit: str | None,
    inputs: Mapping[str, FormulaInput],
    requires: tuple[tuple[str, str], ...] = (),
    decimals: int = 0,
    report_above: Decimal | None = None,
    report_below: Decimal | None = None,
    source: str = "",
) -> Formula:
    """Parse and check; raise FormulaSyntaxError with the position and reason."""
    expression = parse_expression(text)
    checker = _Checker({code: value for code, value in inputs.items() if code != test_code})
    kind = checker.check(expression)
    if kind.kind != "number":
        raise FormulaSyntaxError(expression.at, "a formula must give a number")
    try:
        target = parse_unit(unit)
    except UnitSyntaxError as exc:
        raise FormulaSyntaxError(expression.at, str(exc)) from None
    if not same(kind.unit, target):
        raise FormulaSyntaxError(
            expression.at,
            f"the formula gives {unit_text(kind.unit)}, but {test_code} is reported in "
            f"{unit_text(target)}",
        )
    conditions = []
    for condition_text, reason in requires:
        condition = parse_expression(condition_text)
        if checker.check(condition).kind != "bool":
            raise FormulaSyntaxError(condition.at, "a requirement must be a condition")
        conditions.append(Requirement(condition=condition, reason=reason))
    return Formula(
        test_code=test_code,
        text=text,
        expression=expression,
        unit=unit,
        inputs=tuple(sorted(checker.used)),
        requires=tuple(conditions),
        decimals=decimals,
        report_above=report_above,
        report_below=report_below,
        source=source,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Patient:
    """The patient at collection, as formulas see them."""

    age_years: int | None
    age_days: int | None
    sex: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Calculation:
    """A calculated value and how it is reported, or the reason it was not calculated."""

    value: float | None = None
    rounded: Decimal | None = None
    reported: str = ""  # "71", ">90"
    comparator: str | None = None
    reason: str = ""  # why not calculated

    @property
    def calculated(self) -> bool:
        return self.value is not None


class _Unavailable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def calculate(formula: Formula, *, results: Mapping[str, Decimal], patient: Patient) -> Calculation:
    """Evaluate with the specimen's usable results (the caller leaves out held and implausible
    ones, and ones reported with a comparator); never raises for clinical content."""
    missing = [code for code in formula.inputs if code not in results]
    if missing:
        return Calculation(reason=f"no usable result of {', '.join(missing)} on the specimen")
    try:
        for requirement in formula.requires:
            if not _evaluate(requirement.condition, results, patient):
                return Calculation(reason=requirement.reason)
        value = _evaluate(formula.expression, results, patient)
    except _Unavailable as exc:
        return Calculation(reason=exc.reason)
    if isinstance(value, bool | str) or not math.isfinite(value):
        return Calculation(reason="the formula gave no finite number for these inputs")
    step = Decimal(1).scaleb(-formula.decimals)
    rounded = Decimal(repr(value)).quantize(step, rounding=ROUND_HALF_UP)
    if formula.report_above is not None and rounded > formula.report_above:
        return Calculation(
            value=value, rounded=rounded, reported=f">{formula.report_above}", comparator=">"
        )
    if formula.report_below is not None and rounded < formula.report_below:
        return Calculation(
            value=value, rounded=rounded, reported=f"<{formula.report_below}", comparator="<"
        )
    return Calculation(value=value, rounded=rounded, reported=str(rounded))


def _evaluate(node: Node, results: Mapping[str, Decimal], patient: Patient) -> float | bool | str:
    match node:
        case Number(value=value):
            return value
        case Text(value=value):
            return value
        case Name(name="age"):
            if patient.age_years is None:
                raise _Unavailable("the patient's age is unknown")
            return float(patient.age_years)
        case Name(name="age_days"):
            if patient.age_days is None:
                raise _Unavailable("the patient's age is unknown")
            return float(patient.age_days)
        case Name(name="sex"):
            return patient.sex
        case Name(name=name):
            return float(results[name])
        case Negate(operand=operand):
            return -_num(_evaluate(operand, results, patient))
        case Arith(op=op, left=left, right=right):
            a = _num(_evaluate(left, results, patient))
            b = _num(_evaluate(right, results, patient))
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            if b == 0:
                raise _Unavailable("division by zero")
            return a / b
        case Power(base=base, exponent=exponent):
            b = _num(_evaluate(base, results, patient))
            e = _num(_evaluate(exponent, results, patient))
            try:
                if b < 0 and not e.is_integer():
                    raise _Unavailable("a fractional power of a negative value")
                if b == 0 and e < 0:
                    raise _Unavailable("a negative power of zero")
                return float(b**e)
            except OverflowError:
                raise _Unavailable("the value is too large") from None
        case Call(function="if", arguments=(condition, then, other)):
            chosen = then if _evaluate(condition, results, patient) is True else other
            return _num(_evaluate(chosen, results, patient))
        case Call(function=function, arguments=arguments):
            values = [_num(_evaluate(argument, results, patient)) for argument in arguments]
            return _function(function, values)
        case Compare(op=op, left=left, right=right):
            first = _evaluate(left, results, patient)
            second = _evaluate(right, results, patient)
            if op == "==":
                return first == second
            if op == "!=":
                return first != second
            x, y = _num(first), _num(second)
            return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
        case Logic(op="not", operands=(operand,)):
            return _evaluate(operand, results, patient) is not True
        case Logic(op="and", operands=operands):
            return all(_evaluate(o, results, patient) is True for o in operands)
        case Logic(op="or", operands=operands):
            return any(_evaluate(o, results, patient) is True for o in operands)
    raise _Unavailable("not an expression")  # pragma: no cover - the checker refused it


def _num(value: float | bool | str) -> float:
    if isinstance(value, bool | str):
        raise _Unavailable("a number was expected")  # pragma: no cover - checked when saved
    return value


def _function(function: str, values: list[float]) -> float:
    try:
        if function == "min":
            return min(values)
        if function == "max":
            return max(values)
        if function == "abs":
            return abs(values[0])
        if function == "exp":
            return math.exp(values[0])
        if values[0] <= 0:
            raise _Unavailable(f"{function} of a value that is not above zero")
        return math.log(values[0]) if function == "ln" else math.log10(values[0])
    except OverflowError:
        raise _Unavailable("the value is too large") from None


def formula_problem(test_code: str, line_offset: int, error: FormulaSyntaxError) -> RuleSetError:
    """A formula error as a refused document problem (the line counted in the whole file)."""
    line = line_offset + error.where.line - 1
    return RuleSetError(
        f"formula {test_code}: line {line}, column {error.where.column}: {error.reason}",
        problems=[
            FieldProblem(
                f"line {line}", f"formula {test_code}, column {error.where.column}: {error.reason}"
            )
        ],
    )
