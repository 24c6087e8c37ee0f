"""Control materials, lots, the analysers' control IDs, targets and policies (the QC set-up).

Every change is audited. A target is entered, or established from the lot's first 20 accepted
points on that analyser and then fixed (`establish_if_ready`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.catalog import service as catalog
from lab.catalog import units
from lab.errors import Conflict, InvalidInput, NotFound
from lab.qc import moving, westgard
from lab.tables.qc import (
    ANY_ANALYSER,
    QcControlId,
    QcLot,
    QcMaterial,
    QcMovingSetting,
    QcPoint,
    QcPolicy,
    QcRun,
    QcTarget,
    RunStatus,
    TargetSource,
)
from lab.timeutil import OSLO, as_utc, utcnow


def analyser_name(instrument: str) -> str:
    """The configured analyser name: results carry `name/module`, QC is kept per analyser."""
    return instrument.split("/", 1)[0].strip()


def same_unit(given: str, expected: str) -> bool:
    """Units as analysers write them: case and the micro sign do not matter (`µmol/L`, `umol/l`
    and `umol/L` are the same UCUM unit), and any unit UCUM says is the same quantity with no
    factor (`10*3/uL` and `10*9/L`) is the same (`lab.catalog.units`); anything else is not."""

    def plain(unit: str) -> str:
        return unit.strip().replace("µ", "u").replace("μ", "u").lower()

    return plain(given) == plain(expected) or units.same_unit(given, expected)


def decimal_of(text: str, *, field: str) -> Decimal:
    try:
        value = Decimal(text.strip().replace(",", "."))
    except (InvalidOperation, AttributeError):
        raise InvalidInput.field(field, f"{text!r} is not a number") from None
    if not value.is_finite():
        raise InvalidInput.field(field, f"{text!r} is not a number")
    return value


# --- materials and lots -------------------------------------------------------------------------


def add_material(
    session: Session,
    *,
    actor: Actor,
    name: str,
    level: int,
    manufacturer: str = "",
    description: str = "",
) -> QcMaterial:
    name = name.strip()
    if not name:
        raise InvalidInput.field("name", "a control material needs a name")
    if not 1 <= level <= 9:
        raise InvalidInput.field("level", "the level is a number from 1 to 9")
    if session.scalar(select(QcMaterial).where(QcMaterial.name == name)) is not None:
        raise Conflict(f"there is a control material named {name!r} already")
    material = QcMaterial(
        name=name, level=level, manufacturer=manufacturer.strip(), description=description
    )
    session.add(material)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="qc.material.add",
        entity_type="qc_material",
        entity_id=material.id,
        after={"name": name, "level": level, "manufacturer": material.manufacturer},
    )
    return material


def material_by_name(session: Session, name: str) -> QcMaterial:
    material = session.scalar(select(QcMaterial).where(QcMaterial.name == name.strip()))
    if material is None:
        raise NotFound(f"no control material named {name!r}")
    return material


def add_lot(
    session: Session,
    *,
    actor: Actor,
    material_id: int,
    lot_number: str,
    expires_on: date,
) -> QcLot:
    material = session.get(QcMaterial, material_id)
    if material is None:
        raise NotFound(f"no control material {material_id}")
    lot_number = lot_number.strip()
    if not lot_number:
        raise InvalidInput.field("lot_number", "a lot needs its number from the label")
    duplicate = session.scalar(
        select(QcLot).where(QcLot.material_id == material_id, QcLot.lot_number == lot_number)
    )
    if duplicate is not None:
        raise Conflict(f"lot {lot_number} of {material.name} is registered already")
    lot = QcLot(material_id=material_id, lot_number=lot_number, expires_on=expires_on)
    session.add(lot)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="qc.lot.add",
        entity_type="qc_lot",
        entity_id=lot.id,
        after={"material": material.name, "lot": lot_number, "expires_on": str(expires_on)},
    )
    return lot


def get_lot(session: Session, lot_id: int) -> QcLot:
    lot = session.get(QcLot, lot_id)
    if lot is None:
        raise NotFound(f"no control lot {lot_id}")
    return lot


def list_lots(session: Session) -> list[QcLot]:
    query = select(QcLot).join(QcMaterial).order_by(QcMaterial.level, QcMaterial.name, QcLot.id)
    return list(session.scalars(query))


def map_control_id(
    session: Session, *, actor: Actor, control_id: str, lot_id: int, instrument: str = ""
) -> QcControlId:
    """The specimen ID an analyser sends for a control now stands for `lot_id` (a new lot of the
    same material usually keeps the ID: the mapping moves, old runs keep their lot)."""
    control_id = control_id.strip()
    if not control_id:
        raise InvalidInput.field("control_id", "the control ID the analyser sends is needed")
    lot = get_lot(session, lot_id)
    instrument = analyser_name(instrument)
    mapping = session.scalar(
        select(QcControlId).where(
            QcControlId.control_id == control_id, QcControlId.instrument == instrument
        )
    )
    before = None
    if mapping is None:
        mapping = QcControlId(control_id=control_id, instrument=instrument, lot_id=lot.id)
        session.add(mapping)
    else:
        before = {"lot_id": mapping.lot_id}
        mapping.lot_id = lot.id
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="qc.control_id.map",
        entity_type="qc_control_id",
        entity_id=mapping.id,
        before=before,
        after={"control_id": control_id, "instrument": instrument, "lot_id": lot.id},
    )
    return mapping


def lot_for_control(session: Session, *, instrument: str, control_id: str) -> QcLot | None:
    """The lot a control ID stands for on this analyser (its own mapping before a general one)."""
    found = session.scalars(
        select(QcControlId)
        .where(
            QcControlId.control_id == control_id.strip(),
            QcControlId.instrument.in_([analyser_name(instrument), ANY_ANALYSER]),
        )
        .order_by(QcControlId.instrument.desc())
    ).first()
    return found.lot if found is not None else None


def lots_for_controls(
    session: Session, *, instrument: str, control_ids: set[str]
) -> dict[str, QcLot]:
    """`lot_for_control` for several control IDs in one query."""
    ids = {c.strip() for c in control_ids}
    if not ids:
        return {}
    found: dict[str, QcLot] = {}
    rows = session.scalars(
        select(QcControlId)
        .where(
            QcControlId.control_id.in_(ids),
            QcControlId.instrument.in_([analyser_name(instrument), ANY_ANALYSER]),
        )
        .order_by(QcControlId.instrument.desc())  # the analyser's own mapping first
    )
    for mapping in rows:
        found.setdefault(mapping.control_id, mapping.lot)
    return found


def list_control_ids(session: Session) -> list[QcControlId]:
    return list(
        session.scalars(
            select(QcControlId).order_by(QcControlId.control_id, QcControlId.instrument)
        )
    )


# --- targets and policies -----------------------------------------------------------------------


def set_target(
    session: Session,
    *,
    actor: Actor,
    lot_id: int,
    test_code: str,
    unit: str,
    mean: Decimal | None,
    sd: Decimal | None,
    instrument: str = "",
) -> QcTarget:
    """Enter a lot's mean and SD for a test (on one analyser, or on all with `instrument=""`);
    with neither, the target is established from the lot's first 20 accepted points."""
    lot = get_lot(session, lot_id)
    test = catalog.get_by_code(session, test_code)
    instrument = analyser_name(instrument)
    if (mean is None) != (sd is None):
        raise InvalidInput.field("sd", "give both the mean and the SD, or neither")
    if sd is not None and sd <= 0:
        raise InvalidInput.field("sd", "the SD is a positive number")
    if not unit.strip():
        raise InvalidInput.field("unit", "the unit of the target is needed")
    if test.unit and not same_unit(unit, test.unit):
        raise InvalidInput.field("unit", f"{test.code} is reported in {test.unit}, not {unit}")
    target = session.scalar(
        select(QcTarget).where(
            QcTarget.lot_id == lot.id,
            QcTarget.instrument == instrument,
            QcTarget.test_id == test.id,
        )
    )
    source = TargetSource.ESTABLISHING if mean is None else TargetSource.ENTERED
    before = None
    if target is None:
        target = QcTarget(lot_id=lot.id, instrument=instrument, test_id=test.id)
        session.add(target)
    else:
        before = _target_snapshot(target)
    target.unit = unit.strip()
    target.mean = mean
    target.sd = sd
    target.source = source
    target.set_by = actor.username
    target.set_at = utcnow()
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="qc.target.set",
        entity_type="qc_target",
        entity_id=target.id,
        before=before,
        after=_target_snapshot(target),
    )
    return target


def _target_snapshot(target: QcTarget) -> dict[str, object]:
    return {
        "lot_id": target.lot_id,
        "instrument": target.instrument,
        "test_id": target.test_id,
        "unit": target.unit,
        "mean": None if target.mean is None else str(target.mean),
        "sd": None if target.sd is None else str(target.sd),
        "source": target.source,
    }


def target_for(session: Session, *, lot_id: int, instrument: str, test_id: int) -> QcTarget | None:
    """The analyser's own target for the lot and test, else the one for every analyser."""
    return session.scalars(
        select(QcTarget)
        .where(
            QcTarget.lot_id == lot_id,
            QcTarget.test_id == test_id,
            QcTarget.instrument.in_([analyser_name(instrument), ANY_ANALYSER]),
        )
        .order_by(QcTarget.instrument.desc())
    ).first()


def targets_for(
    session: Session, *, instrument: str, lot_ids: set[int], test_ids: set[int]
) -> dict[tuple[int, int], QcTarget]:
    """`target_for` for several lots and tests in one query, by (lot, test)."""
    if not lot_ids or not test_ids:
        return {}
    found: dict[tuple[int, int], QcTarget] = {}
    rows = session.scalars(
        select(QcTarget)
        .where(
            QcTarget.lot_id.in_(lot_ids),
            QcTarget.test_id.in_(test_ids),
            QcTarget.instrument.in_([analyser_name(instrument), ANY_ANALYSER]),
        )
        .order_by(QcTarget.instrument.desc())
    )
    for target in rows:
        found.setdefault((target.lot_id, target.test_id), target)
    return found


def targets_in_use(
    session: Session, *, instrument: str, test_id: int | None = None, on: date | None = None
) -> list[QcTarget]:
    """Targets of active, unexpired lots on this analyser (its own before general ones), by test
    and level: what a run is judged against and what a full run must hold."""
    day = on or utcnow().astimezone(OSLO).date()
    query = (
        select(QcTarget)
        .join(QcLot, QcLot.id == QcTarget.lot_id)
        .join(QcMaterial, QcMaterial.id == QcLot.material_id)
        .where(
            QcLot.active.is_(True),
            QcLot.expires_on >= day,
            QcTarget.instrument.in_([analyser_name(instrument), ANY_ANALYSER]),
        )
        .order_by(QcTarget.test_id, QcMaterial.level, QcTarget.instrument.desc(), QcLot.id)
    )
    if test_id is not None:
        query = query.where(QcTarget.test_id == test_id)
    chosen: dict[tuple[int, int, int], QcTarget] = {}
    for target in session.scalars(query):
        chosen.setdefault((target.test_id, target.lot.material.level, target.lot_id), target)
    return list(chosen.values())


def required_levels(session: Session, *, instrument: str, test_id: int) -> frozenset[int]:
    """The levels a run must hold to release a lock: every level with a fixed target for the
    test on this analyser in an active lot. An expired lot does not lower the bar: its level
    must come back in control from a lot in date."""
    query = (
        select(QcMaterial.level)
        .join(QcLot, QcLot.material_id == QcMaterial.id)
        .join(QcTarget, QcTarget.lot_id == QcLot.id)
        .where(
            QcLot.active.is_(True),
            QcTarget.test_id == test_id,
            QcTarget.source != TargetSource.ESTABLISHING,
            QcTarget.instrument.in_([analyser_name(instrument), ANY_ANALYSER]),
        )
        .distinct()
    )
    return frozenset(session.scalars(query))


def set_policy(
    session: Session,
    *,
    actor: Actor,
    test_code: str,
    instrument: str = "",
    tea_percent: Decimal | None = None,
    bias_percent: Decimal | None = None,
    rules: list[str] | None = None,
    note: str = "",
) -> QcPolicy:
    test = catalog.get_by_code(session, test_code)
    instrument = analyser_name(instrument)
    if rules is not None:
        try:
            westgard.parse_rules(rules)
        except ValueError:
            known = ", ".join(r.value for r in westgard.Rule)
            raise InvalidInput.field("rules", f"rules are named {known}") from None
    if tea_percent is not None and tea_percent <= 0:
        raise InvalidInput.field("tea_percent", "the allowable total error is above 0 %")
    policy = session.scalar(
        select(QcPolicy).where(QcPolicy.instrument == instrument, QcPolicy.test_id == test.id)
    )
    if policy is None:
        policy = QcPolicy(instrument=instrument, test_id=test.id)
        session.add(policy)
    policy.tea_percent = tea_percent
    policy.bias_percent = bias_percent
    policy.rules = rules
    policy.note = note
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="qc.policy.set",
        entity_type="qc_policy",
        entity_id=policy.id,
        after={
            "test": test.code,
            "instrument": instrument,
            "tea_percent": None if tea_percent is None else str(tea_percent),
            "bias_percent": None if bias_percent is None else str(bias_percent),
            "rules": rules,
        },
    )
    return policy


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleChoice:
    rules: frozenset[westgard.Rule]
    sigma: float | None
    why: str


def rules_for(
    session: Session, *, instrument: str, test_id: int, targets: list[QcTarget]
) -> RuleChoice:
    """The rule set of a test on an analyser: the policy's own list, or the one the sigma
    chooses (the lowest sigma over the levels, from the targets' CV), or the full multirule."""
    policy = session.scalars(
        select(QcPolicy)
        .where(
            QcPolicy.test_id == test_id,
            or_(QcPolicy.instrument == analyser_name(instrument), QcPolicy.instrument == ""),
        )
        .order_by(QcPolicy.instrument.desc())
    ).first()
    return choose_rules(
        rules=None if policy is None else policy.rules,
        tea_percent=None if policy is None else policy.tea_percent,
        bias_percent=None if policy is None else policy.bias_percent,
        spreads=[(t.mean, t.sd) for t in targets],
    )


def choose_rules(
    *,
    rules: list[str] | None,
    tea_percent: Decimal | None,
    bias_percent: Decimal | None,
    spreads: Sequence[tuple[Decimal | None, Decimal | None]],
) -> RuleChoice:
    """`rules_for` once the policy's figures are read (None for a test with no policy);
    `spreads` are the (mean, SD) of the run's targets."""
    if rules:
        return RuleChoice(
            rules=westgard.parse_rules(rules), sigma=None, why="rules set for the test"
        )
    if tea_percent is None:
        return RuleChoice(rules=westgard.MULTIRULE, sigma=None, why="no allowable error set")
    sigmas = [
        westgard.sigma_metric(
            tea_percent=float(tea_percent),
            bias_percent=float(bias_percent or 0),
            cv_percent=abs(float(sd) / float(mean)) * 100,
        )
        for mean, sd in spreads
        if mean and sd
    ]
    known = [s for s in sigmas if s is not None]
    if not known:
        return RuleChoice(rules=westgard.MULTIRULE, sigma=None, why="no target to take a CV from")
    sigma = min(known)
    return RuleChoice(rules=westgard.rules_for_sigma(sigma), sigma=sigma, why=f"sigma {sigma:.1f}")


def establish_if_ready(session: Session, *, actor: Actor, target: QcTarget) -> bool:
    """Fix an establishing target's mean and SD from the lot's first 20 accepted points on the
    analyser(s) it covers. True when it was fixed now."""
    if target.source != TargetSource.ESTABLISHING:
        return False
    query = (
        select(QcPoint.value)
        .join(QcRun, QcRun.id == QcPoint.run_id)
        .where(
            QcPoint.lot_id == target.lot_id,
            QcRun.test_id == target.test_id,
            QcPoint.excluded.is_(False),
            QcRun.status != RunStatus.REJECTED,
        )
        .order_by(QcRun.run_at, QcRun.id)
        .limit(westgard.ESTABLISH_POINTS)
    )
    if target.instrument:
        query = query.where(QcRun.instrument == target.instrument)
    values = [float(v) for v in session.scalars(query)]
    found = westgard.established_target(values)
    if found is None:
        return False
    before = _target_snapshot(target)
    # Kept to the precision a person would enter (the SD to three significant figures more
    # than the data need is noise); the z-scores use these stored figures.
    target.mean = Decimal(f"{found.mean:.6g}")
    target.sd = Decimal(f"{found.sd:.6g}")
    target.source = TargetSource.ESTABLISHED
    target.set_by = actor.username
    target.set_at = utcnow()
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="qc.target.established",
        entity_type="qc_target",
        entity_id=target.id,
        before=before,
        after=_target_snapshot(target),
        detail=f"mean and sample SD of the first {found.n} accepted points",
    )
    return True


def local_day(moment: datetime) -> date:
    """The lab's calendar day of a moment (expiry dates are days in the lab's time zone)."""
    return as_utc(moment).astimezone(OSLO).date()


def set_moving_setting(
    session: Session,
    *,
    actor: Actor,
    test_code: str,
    instrument: str,
    statistic: str,
    block_size: int,
    truncation_low: Decimal,
    truncation_high: Decimal,
    target: Decimal,
    control_low: Decimal,
    control_high: Decimal,
    note: str = "",
) -> QcMovingSetting:
    """Patient-based QC of a test on an analyser (limits chosen on the lab's own data)."""

    test = catalog.get_by_code(session, test_code)
    name = analyser_name(instrument)
    try:
        moving.MovingSettings(
            statistic=moving.Statistic(statistic),
            block_size=block_size,
            truncation_low=float(truncation_low),
            truncation_high=float(truncation_high),
            control_low=float(control_low),
            control_high=float(control_high),
        )
    except ValueError as error:
        raise InvalidInput.field("settings", str(error)) from None
    if not control_low <= target <= control_high:
        raise InvalidInput.field("target", "the target lies between the control limits")
    row = session.scalar(
        select(QcMovingSetting).where(
            QcMovingSetting.instrument == name, QcMovingSetting.test_id == test.id
        )
    )
    if row is None:
        row = QcMovingSetting(instrument=name, test_id=test.id)
        session.add(row)
    row.statistic = statistic
    row.block_size = block_size
    row.truncation_low = truncation_low
    row.truncation_high = truncation_high
    row.target = target
    row.control_low = control_low
    row.control_high = control_high
    row.note = note
    row.active = True
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="qc.moving.set",
        entity_type="qc_moving_setting",
        entity_id=row.id,
        after={
            "test": test.code,
            "instrument": name,
            "statistic": statistic,
            "block_size": block_size,
            "truncation": [str(truncation_low), str(truncation_high)],
            "target": str(target),
            "control": [str(control_low), str(control_high)],
        },
    )
    return row
