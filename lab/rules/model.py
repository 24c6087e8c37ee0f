"""What the judgement layer is given and what it answers (frozen values, no I/O).

`results` builds a `ResultToJudge` and a `JudgementContext` from the tube it has loaded, calls
`judge()` with the active `RuleSet`, and writes the `Judgement` it gets back, with the rule set
version that made it (the version stays on the result when the rule set later changes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType


class HoldCode(StrEnum):
    """Why a result waits for a person (`holds[].code` in the API)."""

    PLAUSIBILITY = "plausibility"  # a value no living patient can have
    CRITICAL = "critical"  # beyond a critical limit (ours or the analyser's)
    DELTA = "delta"  # change from the previous result beyond the test's limit
    INSTRUMENT_FLAG = "instrument_flag"  # the analyser flagged it
    NO_REFERENCE_INTERVAL = "no_reference_interval"  # no interval for this patient
    INTERFERENCE = "interference"  # haemolysis / icterus / lipaemia index over the limit
    QC = "qc"  # the test is locked by QC on that analyser
    RULE = "rule"  # any other rule of the rule set


@dataclass(frozen=True, slots=True, kw_only=True)
class Hold:
    """One reason a result waits for a person.

    `text` is the English sentence of the API and the audit trail; `key` and `params` say the
    same for the pages, which translate `hold.text.<key>` with the params in the reader's
    language (numbers as figures in text, never parsed back out of the sentence).
    """

    code: HoldCode
    text: str
    key: str = ""
    params: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class CodedComment:
    """A comment that goes with the result to the record (e.g. `HEM`: haemolysed specimen)."""

    code: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Interval:
    """A reference interval for one sex ("" = both) and an age band in days [min, max)."""

    sex: str
    age_min_days: int
    age_max_days: int
    low: Decimal | None
    high: Decimal | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TestFacts:
    """What the catalog says of the test being judged."""

    __test__ = False  # not a pytest test class

    code: str
    unit: str | None
    reference_intervals: tuple[Interval, ...] = ()
    critical_low: Decimal | None = None
    critical_high: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SerumIndices:
    """Haemolysis (H), icterus (I) and lipaemia (L) indices as the analyser sends them."""

    h: Decimal | None = None
    i: Decimal | None = None
    l: Decimal | None = None  # noqa: E741 - the index is called L on every analyser


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviousResult:
    """The patient's result of the same test measured (not verified) before this one."""

    value: Decimal
    comparator: str | None
    measured_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultToJudge:
    test_code: str
    value: Decimal | None  # None for a text or coded result
    comparator: str | None = None  # "<", ">", "<=", ">="
    text: str = ""
    unit: str | None = None
    measured_at: datetime
    instrument: str = ""  # analyser name; "" when typed by a person
    flag_profile: str = ""  # analyser profile whose flag mapping applies ("" = keyboard)
    instrument_flags: tuple[str, ...] = ()  # R-7 repeats and vendor flags, as received
    indices: SerumIndices | None = None


_NO_RESULTS: Mapping[str, Decimal] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgementContext:
    test: TestFacts
    age_days: int | None  # at collection; None when the birth date is unknown
    sex: str  # HL7 table 0001: F, M, O, U
    previous: PreviousResult | None = None
    qc_locked: bool = False
    qc_rule: str = ""  # the Westgard rule that locked it, for the hold text
    specimen_results: Mapping[str, Decimal] = field(default_factory=lambda: _NO_RESULTS)
    specimen_rejected: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DeltaFinding:
    """The change from the previous result and the limit it was held against."""

    previous: Decimal
    previous_at: datetime
    change: Decimal  # absolute change, in the test's unit
    relative_change: float | None  # fraction of the previous value; None when it was 0
    limit_text: str  # e.g. "RCV 15.3 %" or "+193 % / -66 % (log-normal RCV)"
    beyond_limit: bool
    # The same limit in parts, for the pages: the change allowed (`±1.0`, `RCV ±12.5 %`) and
    # the window (`48` `h`, `7` `days`).
    limit: str = ""
    window: str = ""
    window_unit: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Judgement:
    flag: str | None  # "L", "H", "LL", "HH" (HL7 table 0078) or None
    implausible: bool  # shown as implausible, never as LL/HH
    critical: bool  # asks for a critical call
    rerun: bool  # asks the analyser (or the technician) for a rerun
    holds: tuple[Hold, ...]  # every reason, in CLSI AUTO15 order
    autoverify: bool  # True only when there is no hold at all and the test may autoverify
    ruleset_version: int
    reference_low: Decimal | None = None
    reference_high: Decimal | None = None
    delta: DeltaFinding | None = None
    comments: tuple[CodedComment, ...] = ()

    @property
    def hold_codes(self) -> tuple[HoldCode, ...]:
        return tuple(hold.code for hold in self.holds)
