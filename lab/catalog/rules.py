"""The catalog as orders and results use it, cached for the whole process.

Every order and every analyser message would otherwise read the same tests, reference intervals
and panels again. The cache holds a frozen snapshot of the whole catalog (a lab has hundreds of
tests, not millions), shared safely between threads, and is rebuilt whenever the catalog changes:
every change raises the number in the one-row table `catalog_version` in the same transaction,
and each transaction compares that number (with the transaction that wrote it) first, as part of
the one stamp of rarely changing facts (`lab.facts`). A transaction that changes the catalog
reads it afresh and never shares what it read: it may still roll back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import event, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from lab import facts
from lab.errors import NotFound
from lab.tables import LabTest, Panel


@dataclass(frozen=True, slots=True)
class IntervalRule:
    sex: str
    age_min_days: int
    age_max_days: int
    low: Decimal | None
    high: Decimal | None


@dataclass(frozen=True, slots=True)
class TestRule:
    __test__ = False  # not a pytest test class

    id: int
    code: str
    loinc: str | None
    loinc_aliases: tuple[str, ...]
    specimen_type: str
    container: str
    active: bool
    unit: str | None
    result_type: str
    decimals: int
    allowed_codes: tuple[str, ...] | None
    critical_low: Decimal | None
    critical_high: Decimal | None
    turnaround_minutes: int | None
    reference_intervals: tuple[IntervalRule, ...]
    ucum: str | None = None  # the unit in UCUM when `unit` is written otherwise

    @classmethod
    def of(cls, test: LabTest) -> TestRule:
        return cls(
            id=test.id,
            code=test.code,
            loinc=test.loinc,
            loinc_aliases=tuple(test.loinc_aliases or ()),
            specimen_type=test.specimen_type,
            container=test.container,
            active=test.active,
            unit=test.unit,
            result_type=test.result_type,
            decimals=test.decimals,
            allowed_codes=tuple(test.allowed_codes) if test.allowed_codes else None,
            critical_low=test.critical_low,
            critical_high=test.critical_high,
            turnaround_minutes=test.turnaround_minutes,
            reference_intervals=tuple(
                IntervalRule(ri.sex, ri.age_min_days, ri.age_max_days, ri.low, ri.high)
                for ri in test.reference_intervals
            ),
            ucum=test.ucum,
        )


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    by_code: dict[str, TestRule]
    by_id: dict[int, TestRule]
    by_loinc: dict[str, TestRule]  # active tests only
    panels: dict[str, tuple[str, ...]]  # panel code -> member test codes, in order


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.version: tuple[int, str] | None = None  # the stamp's catalog part
        self.snapshot: CatalogSnapshot | None = None


# One cache per database (tests and benchmarks use several in one process).
_caches: dict[URL, _Cache] = {}
_caches_lock = threading.Lock()


def _cache_for(session: Session) -> _Cache:
    key = facts.database_of(session)
    with _caches_lock:
        cache = _caches.get(key)
        if cache is None:
            cache = _caches[key] = _Cache()
    return cache


def bump_version(session: Session) -> None:
    """Called by every catalog change, in its transaction (others see it once it commits)."""
    session.execute(text("UPDATE catalog_version SET version = version + 1 WHERE id = 1"))
    session.info.pop(_SESSION_KEY, None)
    session.info[_CHANGED_KEY] = True
    facts.forget(session)


def changing(session: Session) -> bool:
    """Has this transaction changed the catalog? What it reads then is its own, not to share."""
    return bool(session.info.get(_CHANGED_KEY))


def current_version(session: Session) -> int:
    return facts.stamp(session).catalog_version


_SESSION_KEY = "catalog_snapshot"
_CHANGED_KEY = "catalog_changed"


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget_snapshot(session: Session) -> None:
    """A snapshot lives for one transaction: the next one checks the version again."""
    session.info.pop(_SESSION_KEY, None)
    session.info.pop(_CHANGED_KEY, None)


def snapshot(session: Session) -> CatalogSnapshot:
    """The whole catalog as of now; read again only after a change.

    A transaction checks the version once: one order or one message sees one catalog.
    """
    known: CatalogSnapshot | None = session.info.get(_SESSION_KEY)
    if known is not None:
        return known
    loaded = _snapshot(session)
    session.info[_SESSION_KEY] = loaded
    return loaded


def _snapshot(session: Session) -> CatalogSnapshot:
    changed = changing(session)
    version = None if changed else facts.stamp(session).catalog
    cache = _cache_for(session)
    if not changed:
        with cache.lock:
            if cache.version == version and cache.snapshot is not None:
                return cache.snapshot
    tests = [TestRule.of(test) for test in session.scalars(select(LabTest))]
    panels = {
        panel.code: tuple(member.test.code for member in panel.members)
        for panel in session.scalars(select(Panel))
    }
    loaded = CatalogSnapshot(
        by_code={rule.code: rule for rule in tests},
        by_id={rule.id: rule for rule in tests},
        by_loinc=_by_loinc(tests),
        panels=panels,
    )
    if not changed:
        with cache.lock:
            cache.version, cache.snapshot = version, loaded
    return loaded


def _by_loinc(tests: list[TestRule]) -> dict[str, TestRule]:
    """Active tests by LOINC: their own code first, then the alternative codes senders use."""
    found: dict[str, TestRule] = {}
    for rule in tests:
        if rule.active:
            for alias in rule.loinc_aliases:
                found.setdefault(alias, rule)
    for rule in tests:
        if rule.active and rule.loinc:
            found[rule.loinc] = rule  # a test's own code always wins over another's alias
    return found


def rules_by_code(session: Session, codes: Iterable[str]) -> dict[str, TestRule]:
    """Rules of these tests; raises NotFound for the first unknown code."""
    catalog = snapshot(session)
    found: dict[str, TestRule] = {}
    for code in sorted({code.strip().upper() for code in codes}):
        rule = catalog.by_code.get(code)
        if rule is None:
            raise NotFound(f"unknown test code {code!r}")
        found[code] = rule
    return found


def rule_by_id(session: Session, test_id: int) -> TestRule:
    rule = snapshot(session).by_id.get(test_id)
    if rule is None:
        raise NotFound(f"no test with id {test_id}")
    return rule
