"""The judgement layer, pure: it reads nothing and writes nothing.

`results` loads a tube's state, calls these functions with the active, versioned rule sets, and
writes the decision with the version that made it. See docs/judgement.md.
"""

from lab.rules.calculated import FormulaSet, parse_formulas
from lab.rules.formula import Calculation, Formula, FormulaInput, Patient, calculate
from lab.rules.intervals import flag_for, interval_for
from lab.rules.judge import judge
from lab.rules.model import (
    CodedComment,
    DeltaFinding,
    Hold,
    HoldCode,
    Interval,
    Judgement,
    JudgementContext,
    PreviousResult,
    ResultToJudge,
    SerumIndices,
    TestFacts,
)
from lab.rules.reflex import ReflexResult, ReflexRule, ReflexSet, parse_reflexes, reflexes_for
from lab.rules.ruleset import RuleSet, RuleSetError, TestRules, parse_ruleset
from lab.rules.values import ValueCheck, check_value

__all__ = [
    "Calculation",
    "CodedComment",
    "DeltaFinding",
    "Formula",
    "FormulaInput",
    "FormulaSet",
    "Hold",
    "HoldCode",
    "Interval",
    "Judgement",
    "JudgementContext",
    "Patient",
    "PreviousResult",
    "ReflexResult",
    "ReflexRule",
    "ReflexSet",
    "ResultToJudge",
    "RuleSet",
    "RuleSetError",
    "SerumIndices",
    "TestFacts",
    "TestRules",
    "ValueCheck",
    "calculate",
    "check_value",
    "flag_for",
    "interval_for",
    "judge",
    "parse_formulas",
    "parse_reflexes",
    "parse_ruleset",
    "reflexes_for",
]
