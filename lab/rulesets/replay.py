"""Replay a rule set version over stored results: what it would have released, and where it
disagrees with what people decided (`lab rules replay`).

One query streams every result in id order with what the judgement needs: the value as first
measured, the analyser and its flags, the patient's sex and age at collection, and the
patient's previous result of the same test by measuring time (a window function, so a million
results need no query per result). The figures depend only on the stored history and the rule
set text: the same history gives the same figures every time.

Not in the history, so not replayed: serum indices and QC locks at the time (the judgement sees
neither), and the results of other tests on the specimen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from itertools import groupby

from sqlalchemy import Row, text
from sqlalchemy.orm import Session

from lab.catalog.rules import snapshot as catalog_snapshot
from lab.errors import InvalidInput
from lab.rules import (
    FormulaSet,
    Interval,
    JudgementContext,
    Patient,
    PreviousResult,
    ReflexResult,
    ReflexSet,
    ResultToJudge,
    RuleSet,
    TestFacts,
    calculate,
    interval_for,
    judge,
    reflexes_for,
)
from lab.rules.replay import HumanDecision, ReplayCase, ReplaySummary
from lab.rulesets import service
from lab.tables import RELEASED
from lab.tables.rulesets import RuleKind
from lab.timeutil import OSLO

BATCH = 5000

_QUERY = text(
    """
    WITH first_version AS (
        SELECT DISTINCT ON (v.result_id)
               v.result_id, v.value_numeric, v.value_text, v.comparator, v.instrument_flags,
               v.instrument, v.observed_at
          FROM result_version v
         ORDER BY v.result_id, v.version
    ), measured AS (
        SELECT r.id, r.status, r.patient_id, r.test_id, f.value_numeric, f.value_text,
               f.comparator, f.instrument_flags, f.instrument,
               COALESCE(f.observed_at, r.recorded_at) AS measured_at,
               EXISTS (SELECT 1 FROM result_version c
                        WHERE c.result_id = r.id AND c.status = 'corrected') AS corrected,
               (r.status = ANY(:released)
                OR (r.status = 'cancelled' AND r.verified_at IS NOT NULL)) AS verified,
               p.sex, p.birth_date, s.collected_at
          FROM result r
          JOIN first_version f ON f.result_id = r.id
          JOIN patient p ON p.id = r.patient_id
          JOIN specimen s ON s.id = r.specimen_id
         WHERE (CAST(:since AS timestamptz) IS NULL OR r.recorded_at >= :since)
    )
    SELECT m.*,
           LAG(m.value_numeric) OVER w AS previous_value,
           LAG(m.comparator) OVER w AS previous_comparator,
           LAG(m.measured_at) OVER w AS previous_at
      FROM measured m
    WINDOW w AS (PARTITION BY m.patient_id, m.test_id ORDER BY m.measured_at, m.id)
     ORDER BY m.id
    """
)


def _age_days(
    birth_date: date | None, collected_at: datetime | None, measured_at: datetime
) -> int | None:
    if birth_date is None:
        return None
    moment = collected_at or measured_at
    return (moment.astimezone(OSLO).date() - birth_date).days


def _facts(session: Session) -> dict[int, TestFacts]:
    catalog = catalog_snapshot(session)
    return {
        test.id: TestFacts(
            code=test.code,
            unit=test.unit,
            reference_intervals=tuple(
                Interval(
                    sex=ri.sex,
                    age_min_days=ri.age_min_days,
                    age_max_days=ri.age_max_days,
                    low=ri.low,
                    high=ri.high,
                )
                for ri in test.reference_intervals
            ),
            critical_low=test.critical_low,
            critical_high=test.critical_high,
        )
        for test in catalog.by_id.values()
    }


def _rows(session: Session, since: datetime | None) -> Iterator[Row[tuple[object, ...]]]:
    params = {"since": since, "released": sorted(status.value for status in RELEASED)}
    result = session.execute(_QUERY.execution_options(yield_per=BATCH), params)
    yield from result


def replay(
    session: Session,
    *,
    version: int,
    since: datetime | None = None,
    profiles: Mapping[str, str] | None = None,
) -> ReplaySummary:
    """Judge every stored result (recorded since `since`) with autoverification `version`.

    `profiles` maps an analyser name to its flag profile (default `generic`)."""
    row = service.get(session, kind=RuleKind.AUTOVERIFICATION.value, version=version)
    ruleset = service.parse(
        session, kind=RuleKind.AUTOVERIFICATION, text_=row.text, version=row.version
    )
    if not isinstance(ruleset, RuleSet):  # pragma: no cover - the kind decides the type
        raise InvalidInput.field("version", "not an autoverification rule set")
    facts = _facts(session)
    profile_of = dict(profiles or {})
    summary = ReplaySummary(version=version)
    for stored in _rows(session, since):
        data = stored._mapping
        test = facts.get(int(data["test_id"]))
        if test is None:  # pragma: no cover - results always name a catalog test
            continue
        measured_at: datetime = data["measured_at"]
        instrument = str(data["instrument"] or "")
        value: Decimal | None = data["value_numeric"]
        previous = None
        if data["previous_value"] is not None and data["previous_at"] is not None:
            previous = PreviousResult(
                value=data["previous_value"],
                comparator=data["previous_comparator"],
                measured_at=data["previous_at"],
            )
        flags = tuple(
            part for part in str(data["instrument_flags"] or "").replace(",", " ").split() if part
        )
        subject = ResultToJudge(
            test_code=test.code,
            value=value,
            comparator=data["comparator"],
            text=str(data["value_text"] or ""),
            unit=test.unit,
            measured_at=measured_at,
            instrument=instrument,
            flag_profile=profile_of.get(instrument.split("/")[0], "generic") if instrument else "",
            instrument_flags=flags,
        )
        context = JudgementContext(
            test=test,
            age_days=_age_days(data["birth_date"], data["collected_at"], measured_at),
            sex=str(data["sex"] or "U"),
            previous=previous,
        )
        judgement = judge(subject, context, ruleset)
        human = HumanDecision(
            verified=bool(data["verified"]),
            corrected=bool(data["corrected"]),
            cancelled=data["status"] == "cancelled",
        )
        shown = f"{data['comparator'] or ''}{value}" if value is not None else "(text)"
        summary.add(
            ReplayCase(
                result_id=int(data["id"]),
                test_code=test.code,
                value_text=shown,
                judgement=judgement,
                human=human,
            )
        )
    return summary


# ---------------------------------------------------------------------------- dry runs

_SPECIMEN_RESULTS = text(
    """
    SELECT r.specimen_id, r.id, t.code, f.value_numeric, f.comparator,
           COALESCE(f.observed_at, r.recorded_at) AS measured_at,
           p.sex, p.birth_date, s.collected_at
      FROM result r
      JOIN LATERAL (SELECT v.value_numeric, v.comparator, v.observed_at FROM result_version v
                     WHERE v.result_id = r.id ORDER BY v.version LIMIT 1) f ON true
      JOIN lab_test t ON t.id = r.test_id
      JOIN patient p ON p.id = r.patient_id
      JOIN specimen s ON s.id = r.specimen_id
     WHERE t.code = ANY(:codes) AND r.status <> 'cancelled'
       AND (CAST(:since AS timestamptz) IS NULL OR r.recorded_at >= :since)
     ORDER BY r.specimen_id, r.id
    """
)


@dataclass(slots=True)
class DryRun:
    """What a formula or reflex version would have produced over stored results."""

    kind: str
    version: int
    looked_at: int = 0  # specimens (formulas) or results (reflex)
    produced: Counter[str] = field(default_factory=Counter)  # test code -> count
    not_produced: Counter[str] = field(default_factory=Counter)  # reason -> count
    sample: list[str] = field(default_factory=list)

    def report_lines(self) -> list[str]:
        what = "specimens" if self.kind == "formulas" else "results"
        verb = "would calculate" if self.kind == "formulas" else "would add"
        lines = [f"{self.kind} version: {self.version}", f"{what} looked at: {self.looked_at}"]
        lines += [f"{verb} {code}: {count}" for code, count in sorted(self.produced.items())]
        lines += [
            f"not calculated ({reason}): {count}"
            for reason, count in sorted(self.not_produced.items())
        ]
        lines += [f"  e.g. {line}" for line in self.sample]
        return lines


def dry_run(
    session: Session, *, kind: str, version: int, since: datetime | None = None, sample: int = 10
) -> DryRun:
    """Try a formula or reflex version on stored results; changes nothing."""
    row = service.get(session, kind=kind, version=version)
    parsed = service.parse(session, kind=RuleKind(row.kind), text_=row.text, version=row.version)
    facts = {test.code: test for test in _facts(session).values()}
    outcome = DryRun(kind=row.kind, version=row.version)
    if isinstance(parsed, FormulaSet):
        codes = sorted({code for f in parsed.formulas.values() for code in f.inputs})
        rows = session.execute(_SPECIMEN_RESULTS, {"codes": codes, "since": since}).all()
        for _, group in groupby(rows, key=lambda r: r.specimen_id):
            members = list(group)
            outcome.looked_at += 1
            first = members[0]
            age_days = _age_days(first.birth_date, first.collected_at, first.measured_at)
            patient = Patient(
                age_years=_whole_years(first.birth_date, first.collected_at or first.measured_at),
                age_days=age_days,
                sex=str(first.sex or "U"),
            )
            values = {
                m.code: m.value_numeric
                for m in members
                if m.value_numeric is not None and m.comparator is None
            }
            for formula in parsed.formulas.values():
                calculation = calculate(formula, results=values, patient=patient)
                if calculation.calculated:
                    outcome.produced[formula.test_code] += 1
                    if len(outcome.sample) < sample:
                        outcome.sample.append(
                            f"specimen {first.specimen_id}: {formula.test_code} "
                            f"{calculation.reported}"
                        )
                else:
                    outcome.not_produced[calculation.reason] += 1
        return outcome
    if not isinstance(parsed, ReflexSet):  # pragma: no cover - the kind decides the type
        raise InvalidInput.field("kind", "only formulas and reflex rules have a dry run")
    codes = sorted({rule.test for rule in parsed.rules})
    for stored in session.execute(_SPECIMEN_RESULTS, {"codes": codes, "since": since}):
        outcome.looked_at += 1
        test = facts.get(stored.code)
        if test is None or stored.value_numeric is None:  # pragma: no cover
            continue
        interval = interval_for(
            test.reference_intervals,
            str(stored.sex or "U"),
            _age_days(stored.birth_date, stored.collected_at, stored.measured_at),
        )
        met = reflexes_for(
            parsed,
            ReflexResult(
                test_code=stored.code,
                value=stored.value_numeric,
                comparator=stored.comparator,
                reference_low=interval.low if interval else None,
                reference_high=interval.high if interval else None,
            ),
        )
        for rule in met:
            outcome.produced[rule.add] += 1
            if len(outcome.sample) < sample:
                outcome.sample.append(
                    f"result {stored.id}: {stored.code} {stored.comparator or ''}"
                    f"{stored.value_numeric} -> adds {rule.add} ({rule.id})"
                )
    return outcome


def _whole_years(birth_date: date | None, moment: datetime) -> int | None:
    if birth_date is None:
        return None
    on = moment.astimezone(OSLO).date()
    years = on.year - birth_date.year
    if (on.month, on.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years
