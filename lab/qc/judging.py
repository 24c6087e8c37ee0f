"""The database side of judging a control run, in as few statements as it takes (the hot path of
every control result an analyser sends).

- `read_results`: a message's control results with the lot their control ID stands for, the test
  and the target in force - one query for the whole message;
- `read_context`: per run, the lock row (locked for the rest of the transaction, so two runs of
  the same test on the same analyser are judged one after the other), the run's id, a run
  already stored under the same key, the test's QC policy, the levels a full run must hold, and
  the points of the accepted runs the rules look back at - one query;
- `write_run`: the run, its points, its decisions, its audit row and the lock - one statement.

Plain rows, not ORM objects: nothing here is loaded into the session's identity map. What
`lab.qc.service` makes of them (the judgement, the lock's next state) is the same as before.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from lab.errors import InvalidInput
from lab.qc import lock as qc_lock
from lab.qc import materials, westgard
from lab.tables.qc import (
    ANY_ANALYSER,
    QcLock,
    QcTarget,
    RunStatus,
    TargetSource,
)
from lab.timeutil import as_utc, utcnow

# LIS2-A2 10.1.9: results a control may be judged on (as for patient results).
_JUDGEABLE_STATUS = {"", "F", "C", "P", "R"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """The target a control result is judged against: a copy of its `qc_target` row."""

    id: int
    lot_id: int
    instrument: str
    test_id: int
    unit: str
    mean: Decimal | None
    sd: Decimal | None
    source: str

    @classmethod
    def of(cls, row: QcTarget) -> Target:
        return cls(
            id=row.id,
            lot_id=row.lot_id,
            instrument=row.instrument,
            test_id=row.test_id,
            unit=row.unit,
            mean=row.mean,
            sd=row.sd,
            source=row.source,
        )

    @property
    def judgeable(self) -> bool:
        """A fixed mean and SD (a lot still being established is not judged yet)."""
        return self.source != TargetSource.ESTABLISHING and bool(self.mean) and bool(self.sd)


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A control result that can be judged: its lot, level and the target in force."""

    level: int
    lot_id: int
    value: Decimal
    unit: str
    observed_at: datetime
    target: Target
    qc_result_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Judgeable:
    """One stored control result: its candidate, or why it cannot be judged."""

    qc_result_id: int
    candidate: Candidate | None
    reason: str = ""


_READ_RESULTS = text(
    """
    SELECT r.id, r.instrument_test_code, r.test_code, r.result_status, r.value, r.unit,
        r.control_id, coalesce(r.observed_at, r.received_at) AS observed_at,
        lot.id AS lot_id, lot.lot_number, lot.expires_on, lot.active,
        m.name AS material, m.level, t.id AS test_id, t.code AS test,
        g.id AS target_id, g.instrument AS target_instrument, g.unit AS target_unit,
        g.mean, g.sd, g.source
    FROM qc_result r
    LEFT JOIN LATERAL (
        SELECT c.lot_id FROM qc_control_id c
        WHERE c.control_id = btrim(r.control_id) AND c.instrument IN (:instrument, :anywhere)
        ORDER BY c.instrument DESC  -- the analyser's own mapping before a general one
        LIMIT 1
    ) mapping ON true
    LEFT JOIN qc_lot lot ON lot.id = mapping.lot_id
    LEFT JOIN qc_material m ON m.id = lot.material_id
    LEFT JOIN lab_test t ON t.code = upper(btrim(r.test_code))
    LEFT JOIN LATERAL (
        SELECT * FROM qc_target g
        WHERE g.lot_id = lot.id AND g.test_id = t.id AND g.instrument IN (:instrument, :anywhere)
        ORDER BY g.instrument DESC  -- the analyser's own target before a general one
        LIMIT 1
    ) g ON true
    WHERE r.id = ANY(:ids)
    ORDER BY r.id
    """
)


def read_results(session: Session, *, instrument: str, ids: Sequence[int]) -> list[Judgeable]:
    """The control results `ids` (in id order), each as a candidate or with the reason it
    cannot be judged: unmapped test, status, not a number, unknown control ID, expired or
    inactive lot, test not in the catalog, no target, wrong unit."""
    rows = session.execute(
        _READ_RESULTS, {"instrument": instrument, "anywhere": ANY_ANALYSER, "ids": list(ids)}
    )
    return [_judgeable(row, instrument=instrument) for row in rows]


def _judgeable(row: Any, *, instrument: str) -> Judgeable:
    def refused(reason: str) -> Judgeable:
        return Judgeable(qc_result_id=row.id, candidate=None, reason=reason)

    observed_at = row.observed_at or utcnow()
    if row.test_code is None:
        return refused(
            f"test code {row.instrument_test_code!r} is not mapped for analyser {instrument}"
        )
    if row.result_status.upper() not in _JUDGEABLE_STATUS:
        return refused(f"result status {row.result_status!r} (R-9) is not a result to judge")
    try:
        value = materials.decimal_of(row.value, field="value")
    except InvalidInput:
        return refused(f"the control value {row.value!r} is not a number")
    if row.lot_id is None:
        return refused(
            f"control ID {row.control_id!r} is not mapped to a control lot on analyser {instrument}"
        )
    label = f"lot {row.lot_number} of {row.material}"
    if row.expires_on < materials.local_day(observed_at):
        return refused(f"{label} expired on {row.expires_on.isoformat()}")
    if not row.active:
        return refused(f"{label} is not in use")
    if row.test_id is None:
        return refused(f"test {row.test_code!r} is not in the catalog")
    if row.target_id is None:
        return refused(f"{label} has no target for {row.test} on analyser {instrument}")
    if row.unit.strip() and not materials.same_unit(row.unit, row.target_unit):
        return refused(f"unit {row.unit!r} does not match the target's unit {row.target_unit!r}")
    target = Target(
        id=row.target_id,
        lot_id=row.lot_id,
        instrument=row.target_instrument,
        test_id=row.test_id,
        unit=row.target_unit,
        mean=row.mean,
        sd=row.sd,
        source=row.source,
    )
    candidate = Candidate(
        level=row.level,
        lot_id=row.lot_id,
        value=value,
        unit=target.unit,
        observed_at=as_utc(observed_at),
        target=target,
        qc_result_id=row.id,
    )
    return Judgeable(qc_result_id=row.id, candidate=candidate)


# --- per run: what judging it needs -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RunContext:
    run_id: int  # the id the new run gets (drawn from the sequence)
    existing_run_id: int | None  # a run stored under the same key already
    policy_rules: list[str] | None
    tea_percent: Decimal | None
    bias_percent: Decimal | None
    required_levels: frozenset[int]
    history: list[westgard.Run]  # the accepted runs before it, oldest first
    lock_id: int | None  # None: the test has no lock row on this analyser yet
    lock: qc_lock.Lock
    last_event: tuple[datetime, int, str] | None


_READ_CONTEXT = text(
    """
    WITH lock_row AS (
        SELECT * FROM qc_lock WHERE instrument = :instrument AND test_id = :test_id FOR UPDATE
    ), recent AS (  -- the accepted runs a rule can look back at; a new run comes after
        SELECT id, run_at FROM qc_run  -- every stored run of the same time
        WHERE instrument = :instrument AND test_id = :test_id AND status = :accepted
            AND run_at <= :run_at
        ORDER BY run_at DESC, id DESC
        LIMIT :history_runs
    )
    SELECT nextval('qc_run_id_seq') AS run_id,
        (SELECT id FROM qc_run
         WHERE instrument = :instrument AND test_id = :test_id AND run_key = :run_key
        ) AS existing,
        ARRAY(  -- the levels a run must hold to release a lock (materials.required_levels)
            SELECT DISTINCT m.level FROM qc_material m
            JOIN qc_lot l ON l.material_id = m.id
            JOIN qc_target g ON g.lot_id = l.id
            WHERE l.active AND g.test_id = :test_id AND g.source <> :establishing
                AND g.instrument IN (:instrument, :anywhere)
        ) AS required,
        (SELECT json_agg(json_build_array(h.id, p.level, p.value, p.mean, p.sd, p.id)
                         ORDER BY h.run_at, h.id, p.level)
         FROM recent h JOIN qc_point p ON p.run_id = h.id
         WHERE p.mean IS NOT NULL AND p.sd > 0
        ) AS history,
        policy.rules, policy.tea_percent, policy.bias_percent,
        lock_row.id AS lock_id, lock_row.state, lock_row.rule, lock_row.run_id AS lock_run_id,
        lock_row.since, lock_row.last_event_at, lock_row.last_event_sequence,
        lock_row.last_event_kind
    FROM (SELECT 1) AS one
    LEFT JOIN lock_row ON true
    LEFT JOIN LATERAL (
        SELECT rules, tea_percent, bias_percent FROM qc_policy
        WHERE test_id = :test_id AND instrument IN (:instrument, :anywhere)
        ORDER BY instrument DESC  -- the analyser's own policy before a general one
        LIMIT 1
    ) policy ON true
    """
)


def read_context(
    session: Session, *, instrument: str, test_id: int, run_key: str, run_at: datetime
) -> RunContext:
    """Everything judging a new run needs, in one query (the lock row locked FOR UPDATE)."""
    row = session.execute(
        _READ_CONTEXT,
        {
            "instrument": instrument,
            "test_id": test_id,
            "run_key": run_key,
            "run_at": run_at,
            "accepted": RunStatus.ACCEPTED.value,
            "establishing": TargetSource.ESTABLISHING.value,
            "anywhere": ANY_ANALYSER,
            "history_runs": westgard.HISTORY_RUNS,
        },
    ).one()
    runs: dict[int, list[westgard.Point]] = {}
    for run_id, level, value, mean, sd, point_id in row.history or []:
        runs.setdefault(run_id, []).append(
            westgard.Point(
                level=level, value=float(value), mean=float(mean), sd=float(sd), point_id=point_id
            )
        )
    return RunContext(
        run_id=row.run_id,
        existing_run_id=row.existing,
        policy_rules=row.rules,
        tea_percent=row.tea_percent,
        bias_percent=row.bias_percent,
        required_levels=frozenset(row.required or ()),
        history=[westgard.Run(run_id=k, points=tuple(v)) for k, v in runs.items()],
        lock_id=row.lock_id,
        lock=(
            qc_lock.IN_CONTROL
            if row.lock_id is None
            else qc_lock.Lock(
                state=qc_lock.LockState(row.state),
                rule=row.rule,
                run_id=row.lock_run_id,
                since=row.since,
            )
        ),
        last_event=(
            None
            if row.last_event_at is None
            else (row.last_event_at, row.last_event_sequence, row.last_event_kind)
        ),
    )


# --- writing it ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LockWrite:
    """The lock row after the run: its new state and the newest event folded into it."""

    instrument: str
    test_id: int
    lock_id: int | None  # None: the row is inserted
    after: qc_lock.Lock
    newest: tuple[datetime, int, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Written:
    judged_at: datetime
    point_ids: dict[int, int]  # by level
    violation_ids: list[int]  # in the order given
    lock_id: int | None


_WRITE_RUN = """
    WITH new_run AS (
        INSERT INTO qc_run (id, instrument, test_id, run_at, run_key, source, status,
            rules_applied, first_rule, all_levels, entered_by, comment)
        VALUES (:id, :instrument, :test_id, :run_at, :run_key, :source, :status,
            CAST(:rules_applied AS varchar(8)[]), :first_rule, :all_levels, :entered_by,
            :comment)
        RETURNING judged_at
    ), new_points AS (
        INSERT INTO qc_point (run_id, level, lot_id, value, unit, mean, sd, z, excluded,
            qc_result_id)
        SELECT :id, p.level, p.lot_id, p.value, p.unit, p.mean, p.sd, p.z, p.excluded,
            p.qc_result_id
        FROM jsonb_to_recordset(CAST(:points AS jsonb)) AS p(level smallint, lot_id bigint,
            value numeric, unit text, mean numeric, sd numeric, z float8, excluded boolean,
            qc_result_id bigint)
        RETURNING id, level
    ), new_rules AS (
        INSERT INTO qc_violation (run_id, rule, severity, scope, points)
        SELECT :id, v.rule, v.severity, v.scope, v.points
        FROM jsonb_to_recordset(CAST(:violations AS jsonb))
            AS v(rule text, severity text, scope text, points jsonb)
        RETURNING id
    ), new_audit AS (
        INSERT INTO audit_event (actor_user_id, actor_name, channel, action, entity_type,
            entity_id, patient_id, before, after, detail, via)
        SELECT a.actor_user_id, a.actor_name, a.channel, a.action, a.entity_type, a.entity_id,
            a.patient_id, a.before, a.after, a.detail, a.via
        FROM jsonb_to_recordset(CAST(:audit AS jsonb)) AS a(actor_user_id bigint,
            actor_name text, channel text, action text, entity_type text, entity_id text,
            patient_id bigint, before jsonb, after jsonb, detail text, via text)
    )/*lock*/
    SELECT (SELECT judged_at FROM new_run) AS judged_at,
        (SELECT json_agg(json_build_array(level, id)) FROM new_points) AS points,
        (SELECT array_agg(id ORDER BY id) FROM new_rules) AS violations,
        /*lock_id*/ AS lock_id
"""
_LOCK_UPDATE = """, lock_row AS (
        UPDATE qc_lock SET (state, rule, run_id, since, last_event_at, last_event_sequence,
            last_event_kind) = (:state, :rule, :lock_run_id, :since, :last_event_at,
            :last_event_sequence, :last_event_kind)
        WHERE id = :lock_id
        RETURNING id
    )"""
_LOCK_INSERT = """, lock_row AS (
        INSERT INTO qc_lock (instrument, test_id, state, rule, run_id, since, last_event_at,
            last_event_sequence, last_event_kind)
        VALUES (:instrument, :test_id, :state, :rule, :lock_run_id, :since, :last_event_at,
            :last_event_sequence, :last_event_kind)
        RETURNING id
    )"""
_WRITE = {
    "none": text(_WRITE_RUN.replace("/*lock*/", "").replace("/*lock_id*/", "NULL::bigint")),
    "update": text(
        _WRITE_RUN.replace("/*lock*/", _LOCK_UPDATE).replace(
            "/*lock_id*/", "(SELECT id FROM lock_row)"
        )
    ),
    "insert": text(
        _WRITE_RUN.replace("/*lock*/", _LOCK_INSERT).replace(
            "/*lock_id*/", "(SELECT id FROM lock_row)"
        )
    ),
}


def _json(rows: Sequence[dict[str, Any]]) -> str:
    # Decimals as their text, so numeric columns get them exactly.
    return json.dumps(list(rows), default=str)


def write_run(
    session: Session,
    *,
    run: dict[str, Any],
    points: Sequence[dict[str, Any]],
    violations: Sequence[dict[str, Any]],
    audit_rows: Sequence[dict[str, Any]],
    lock: LockWrite | None,
) -> Written:
    """Insert the run (its `id` drawn already), its points and decisions and the audit rows,
    and write the lock row, in one statement (data-modifying WITH queries)."""
    params: dict[str, Any] = {
        **run,
        "points": _json(points),
        "violations": _json(violations),
        "audit": _json(audit_rows),
    }
    variant = "none"
    if lock is not None:
        variant = "insert" if lock.lock_id is None else "update"
        params |= {
            "lock_id": lock.lock_id,
            "state": lock.after.state.value,
            "rule": lock.after.rule,
            "lock_run_id": lock.after.run_id,
            "since": lock.after.since,
            "last_event_at": lock.newest[0],
            "last_event_sequence": lock.newest[1],
            "last_event_kind": lock.newest[2],
        }
    row = session.execute(_WRITE[variant], params).one()
    if lock is not None and lock.lock_id is not None:
        # The session may hold this lock row from an earlier read: it is stale now.
        stale = session.identity_map.get(identity_key(QcLock, lock.lock_id))
        if stale is not None:
            session.expire(stale)
    return Written(
        judged_at=row.judged_at,
        point_ids={level: point_id for level, point_id in row.points},
        violation_ids=list(row.violations or []),
        lock_id=row.lock_id,
    )
