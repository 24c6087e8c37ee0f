"""What the results service needs to know of a test, cached for the whole process.

Every analyser message would otherwise read the same tests and reference intervals again. The
cache holds frozen snapshots, shared safely between threads, and is dropped whenever the catalog
changes: every change bumps `catalog_version_seq` in the same transaction, and each look-up
compares that number first (one small query instead of two larger ones).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from lab.catalog.models import LabTest
from lab.errors import NotFound


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
    unit: str | None
    result_type: str
    decimals: int
    allowed_codes: tuple[str, ...] | None
    critical_low: Decimal | None
    critical_high: Decimal | None
    reference_intervals: tuple[IntervalRule, ...]

    @classmethod
    def of(cls, test: LabTest) -> TestRule:
        return cls(
            id=test.id,
            code=test.code,
            unit=test.unit,
            result_type=test.result_type,
            decimals=test.decimals,
            allowed_codes=tuple(test.allowed_codes) if test.allowed_codes else None,
            critical_low=test.critical_low,
            critical_high=test.critical_high,
            reference_intervals=tuple(
                IntervalRule(ri.sex, ri.age_min_days, ri.age_max_days, ri.low, ri.high)
                for ri in test.reference_intervals
            ),
        )


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.version: int | None = None
        self.rules: dict[str, TestRule] = {}


# One cache per database (tests and benchmarks use several in one process).
_caches: dict[str, _Cache] = {}
_caches_lock = threading.Lock()


def _cache_for(session: Session) -> _Cache:
    key = session.get_bind().engine.url.render_as_string(hide_password=True)
    with _caches_lock:
        cache = _caches.get(key)
        if cache is None:
            cache = _caches[key] = _Cache()
    return cache


def bump_version(session: Session) -> None:
    """Called by every catalog change, in its transaction."""
    session.execute(text("SELECT nextval('catalog_version_seq')"))


def current_version(session: Session) -> int:
    return int(session.execute(text("SELECT last_value FROM catalog_version_seq")).scalar_one())


def rules_by_code(session: Session, codes: Iterable[str]) -> dict[str, TestRule]:
    """Rules of these tests; raises NotFound for the first unknown code."""
    wanted = {code.strip().upper() for code in codes}
    version = current_version(session)
    _cache = _cache_for(session)
    with _cache.lock:
        if _cache.version != version:
            _cache.rules, _cache.version = {}, version
        missing = wanted - _cache.rules.keys()
    if missing:
        loaded = {
            test.code: TestRule.of(test)
            for test in session.scalars(select(LabTest).where(LabTest.code.in_(missing)))
        }
        with _cache.lock:
            if _cache.version == version:
                _cache.rules.update(loaded)
        found = {**loaded}
    else:
        found = {}
    with _cache.lock:
        for code in wanted - found.keys():
            rule = _cache.rules.get(code)
            if rule is not None:
                found[code] = rule
    for code in sorted(wanted):
        if code not in found:
            raise NotFound(f"unknown test code {code!r}")
    return {code: found[code] for code in wanted}
