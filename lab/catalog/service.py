"""The test catalog: look-ups used by orders and results, admin changes, and the demo catalog."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.catalog import units
from lab.catalog.rules import TestRule, bump_version, snapshot
from lab.catalog.schemas import LabTestIn, ReferenceIntervalIn
from lab.errors import InvalidInput, NotFound
from lab.tables import LabTest, Panel, PanelMember, ReferenceInterval

DEMO_CATALOG = Path(__file__).with_name("demo_catalog.toml")
DAYS_PER_YEAR = Decimal("365.25")


@dataclass(frozen=True, slots=True)
class ReferenceRange:
    low: Decimal | None
    high: Decimal | None

    def text(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low}-{self.high}"
        if self.high is not None:
            return f"<{self.high}"
        if self.low is not None:
            return f">{self.low}"
        return ""


def list_tests(session: Session, *, include_inactive: bool = False) -> list[LabTest]:
    query = select(LabTest).order_by(LabTest.code)
    if not include_inactive:
        query = query.where(LabTest.active.is_(True))
    return list(session.scalars(query))


def get_by_code(session: Session, code: str) -> LabTest:
    test = session.scalar(select(LabTest).where(LabTest.code == code.strip().upper()))
    if test is None:
        raise NotFound(f"unknown test code {code!r}", code="test_unknown", params={"code": code})
    return test


def resolve_test(session: Session, *, code: str, system: str = "") -> TestRule:
    """An active test named by local code or by LOINC (`LN`), as an order names it.

    Any other coding system is taken as the lab's own name for its local codes.
    """
    catalog = snapshot(session)
    if system.strip().upper() == "LN":
        rule = catalog.by_loinc.get(code.strip())
        if rule is None:
            raise NotFound(
                f"no active test with LOINC {code!r}", code="test_unknown", params={"code": code}
            )
        return rule
    rule = catalog.by_code.get(code.strip().upper())
    if rule is None:
        raise NotFound(f"unknown test code {code!r}", code="test_unknown", params={"code": code})
    if not rule.active:
        raise NotFound(
            f"test {rule.code} is no longer offered",
            code="test_withdrawn",
            params={"code": rule.code},
        )
    return rule


def expand(session: Session, code: str, system: str = "") -> tuple[list[TestRule], str | None]:
    """A code that names a panel gives its active member tests; any other names one test."""
    catalog = snapshot(session)
    members = catalog.panels.get(code.strip().upper())
    if members is not None and system.strip().upper() != "LN":
        rules = [catalog.by_code[member] for member in members]
        return [rule for rule in rules if rule.active], code.strip().upper()
    return [resolve_test(session, code=code, system=system)], None


def list_panels(session: Session) -> list[Panel]:
    return list(session.scalars(select(Panel).order_by(Panel.code)))


def reference_range(
    test: LabTest | TestRule, *, sex: str, age_days: int | None
) -> ReferenceRange | None:
    """The interval for this sex and age: a sex-specific one wins over one for both sexes."""
    candidates = [
        ri
        for ri in test.reference_intervals
        if ri.sex in ("", sex)
        and (age_days is None or ri.age_min_days <= age_days < ri.age_max_days)
    ]
    if not candidates:
        return None
    best = sorted(candidates, key=lambda ri: (ri.sex == "", ri.age_max_days - ri.age_min_days))[0]
    if age_days is None and len({(c.low, c.high) for c in candidates if c.sex == best.sex}) > 1:
        return None  # without a birth date we cannot choose between age bands
    return ReferenceRange(best.low, best.high)


def years_to_days(years: Decimal) -> int:
    return int(years * DAYS_PER_YEAR)


def save_test(session: Session, *, actor: Actor, data: LabTestIn) -> LabTest:
    """Create a test or replace its definition (admin)."""
    _check_test(data)
    test = session.scalar(select(LabTest).where(LabTest.code == data.code))
    before = test_snapshot(test) if test else None
    fields = data.model_dump(exclude={"reference_intervals"})
    if test is None:
        test = LabTest(**fields)
        session.add(test)
    else:
        for key, value in fields.items():
            setattr(test, key, value)
        for old in list(test.reference_intervals):
            session.delete(old)
        test.reference_intervals.clear()
    session.flush()
    for interval in data.reference_intervals:
        test.reference_intervals.append(_interval(interval))
    session.flush()
    bump_version(session)
    audit.record(
        session,
        actor=actor,
        action="catalog.save_test",
        entity_type="lab_test",
        entity_id=test.code,
        before=before,
        after=test_snapshot(test),
    )
    return test


def _check_test(data: LabTestIn) -> None:
    if data.result_type == "numeric" and not data.unit:
        raise InvalidInput.field("unit", "a numeric test needs a UCUM unit")
    _check_units(data)
    if (
        data.critical_low is not None
        and data.critical_high is not None
        and data.critical_low >= data.critical_high
    ):
        raise InvalidInput.field("critical_high", "must be above the low critical limit")
    if (data.critical_low is not None or data.critical_high is not None) and not (
        data.critical_source.strip()
    ):
        raise InvalidInput.field("critical_source", "say where the critical limits come from")
    for index, ri in enumerate(data.reference_intervals):
        if ri.low is not None and ri.high is not None and ri.low > ri.high:
            raise InvalidInput.field(f"reference_intervals[{index}].high", "must be above low")
        if _band(ri)[0] >= _band(ri)[1]:
            raise InvalidInput.field(f"reference_intervals[{index}].age_max_years", "empty band")


def _check_units(data: LabTestIn) -> None:
    """The catalog's units are UCUM units (`lab.catalog.units`): either `unit` itself, or the
    `ucum` code given beside a unit the lab writes otherwise. Refused with the test's code, so
    a catalog file with a typo stops at load, not at the first analyser result."""
    if data.ucum is not None:
        problem = units.ucum_problem(data.ucum)
        if problem is not None:
            raise InvalidInput.field("ucum", f"{data.code}: {problem}")
        if not data.unit:
            raise InvalidInput.field("unit", f"{data.code}: ucum is given, but no unit")
        return
    if data.unit:
        problem = units.ucum_problem(data.unit)
        if problem is not None:
            raise InvalidInput.field(
                "unit",
                f"{data.code}: {problem}; write it in UCUM, or give its UCUM code as ucum",
            )


def _band(data: ReferenceIntervalIn) -> tuple[int, int]:
    """The age band in days: given in days, or in years (365.25 days each)."""
    low = data.age_min_days if data.age_min_days is not None else years_to_days(data.age_min_years)
    high = data.age_max_days if data.age_max_days is not None else years_to_days(data.age_max_years)
    return low, high


def _interval(data: ReferenceIntervalIn) -> ReferenceInterval:
    age_min_days, age_max_days = _band(data)
    return ReferenceInterval(
        sex=data.sex,
        age_min_days=age_min_days,
        age_max_days=age_max_days,
        low=data.low,
        high=data.high,
        source=data.source,
    )


def test_snapshot(test: LabTest) -> dict[str, Any]:
    return {
        "code": test.code,
        "name_nb": test.name_nb,
        "loinc": test.loinc,
        "loinc_aliases": list(test.loinc_aliases or []),
        "unit": test.unit,
        "ucum": test.ucum,
        "critical": [str(test.critical_low), str(test.critical_high)],
        "reference_intervals": [
            [ri.sex, ri.age_min_days, ri.age_max_days, str(ri.low), str(ri.high)]
            for ri in test.reference_intervals
        ],
    }


def load_catalog_file(session: Session, *, actor: Actor, path: Path = DEMO_CATALOG) -> int:
    """Load tests and panels from a catalog TOML file (the demo catalog by default)."""
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    count = 0
    for entry in document.get("test", []):
        intervals = [
            ReferenceIntervalIn(
                sex=ri.get("sex", ""),
                age_min_years=Decimal(str(ri.get("age_min_years", 0))),
                age_max_years=Decimal(str(ri.get("age_max_years", 120))),
                age_min_days=ri.get("age_min_days"),
                age_max_days=ri.get("age_max_days"),
                low=_decimal(ri.get("low")),
                high=_decimal(ri.get("high")),
                source=ri["source"],
            )
            for ri in entry.get("reference", [])
        ]
        data = LabTestIn(
            code=entry["code"],
            name_nb=entry["name_nb"],
            name_en=entry["name_en"],
            loinc=entry.get("loinc"),
            loinc_aliases=list(entry.get("loinc_aliases", [])),
            nlk=entry.get("nlk"),
            specimen_type=entry["specimen_type"],
            container=entry["container"],
            result_type=entry.get("result_type", "numeric"),
            unit=entry.get("unit"),
            ucum=entry.get("ucum"),
            decimals=entry.get("decimals", 0),
            critical_low=_decimal(entry.get("critical_low")),
            critical_high=_decimal(entry.get("critical_high")),
            critical_source=entry.get("critical_source", ""),
            turnaround_minutes=entry.get("turnaround_minutes"),
            reference_intervals=intervals,
        )
        save_test(session, actor=actor, data=data)
        count += 1
    for entry in document.get("panel", []):
        save_panel(
            session,
            actor=actor,
            code=entry["code"],
            name_nb=entry["name_nb"],
            name_en=entry["name_en"],
            test_codes=entry["tests"],
        )
    return count


def save_panel(
    session: Session, *, actor: Actor, code: str, name_nb: str, name_en: str, test_codes: list[str]
) -> Panel:
    tests = [get_by_code(session, c) for c in test_codes]
    panel = session.scalar(select(Panel).where(Panel.code == code))
    if panel is None:
        panel = Panel(code=code, name_nb=name_nb, name_en=name_en)
        session.add(panel)
    else:
        panel.name_nb, panel.name_en = name_nb, name_en
        for member in list(panel.members):
            session.delete(member)
        panel.members.clear()
    session.flush()
    for position, test in enumerate(tests):
        panel.members.append(PanelMember(test_id=test.id, position=position, test=test))
    session.flush()
    bump_version(session)
    audit.record(
        session,
        actor=actor,
        action="catalog.save_panel",
        entity_type="panel",
        entity_id=code,
        after={"tests": test_codes},
    )
    return panel


def _decimal(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))
