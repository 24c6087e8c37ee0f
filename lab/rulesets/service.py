"""Rule documents in the database: load a version, run it in shadow, activate it, read it.

A version is parsed and checked against the catalog when it is loaded and again when it is
activated (the catalog may have changed in between); a document that does not parse or names an
unknown test is refused with every problem's line, and nothing is stored. Only a person with the
permission to activate rule sets (the lab physician) can make a version active; every load and
state change is audited with who and when.

The parsed active and shadow versions are cached per process under the rule set part of the
stamp of rarely changing facts (`lab.facts`, one small query per transaction, shared with the
catalog and the QC locks) and the catalog's version they were checked against: the judgement of
a result costs no parsing, and an activation committed anywhere is in the next transaction's
stamp.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from lab import audit, facts
from lab.audit import Actor
from lab.catalog.rules import CatalogSnapshot
from lab.catalog.rules import changing as catalog_changing
from lab.catalog.rules import snapshot as catalog_snapshot
from lab.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from lab.rules import (
    FormulaInput,
    FormulaSet,
    Hold,
    ReflexSet,
    RuleSet,
    RuleSetError,
    parse_formulas,
    parse_reflexes,
    parse_ruleset,
)
from lab.rules.demo import demo_texts
from lab.tables.rulesets import RuleKind, RuleSetVersion, RuleShadowDecision, RuleState
from lab.timeutil import utcnow
from lab.users.roles import Permission, permissions_of

Parsed = RuleSet | FormulaSet | ReflexSet
MAX_TEXT = 1_000_000  # a rule document is a few kilobytes; this bounds a mistaken upload


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedVersion:
    id: int
    kind: RuleKind
    version: int
    state: RuleState
    parsed: Parsed


# ---------------------------------------------------------------------------- parsing


def _formula_inputs(catalog: CatalogSnapshot, rules: RuleSet | None) -> dict[str, FormulaInput]:
    inputs: dict[str, FormulaInput] = {}
    for code, test in catalog.by_code.items():
        limits = rules.for_test(code) if rules is not None else None
        low = limits.plausible_low if limits is not None else None
        high = limits.plausible_high if limits is not None else None
        inputs[code] = FormulaInput(
            unit=test.unit,
            low=float(low) if low is not None else None,
            high=float(high) if high is not None else None,
        )
    return inputs


def parse(
    session: Session,
    *,
    kind: RuleKind,
    text_: str,
    version: int,
    limits_from: RuleSet | None = None,
) -> Parsed:
    """Parse a document of this kind against the current catalog; raises RuleSetError.

    Formulas are checked against the plausibility limits of `limits_from`, by default the
    active autoverification rule set."""
    rules = limits_from
    if kind is RuleKind.FORMULAS and rules is None:
        rules = active_ruleset(session)
    return _parse(session, kind=kind, text_=text_, version=version, limits=rules)


def _parse(
    session: Session, *, kind: RuleKind, text_: str, version: int, limits: RuleSet | None
) -> Parsed:
    catalog = catalog_snapshot(session)
    units = {code: test.unit for code, test in catalog.by_code.items()}
    if kind is RuleKind.AUTOVERIFICATION:
        return parse_ruleset(text_, version=version, known_tests=units)
    if kind is RuleKind.FORMULAS:
        # Formulas may divide only by tests whose plausibility limits keep them above zero:
        # the limits are those of `limits` (None: no test has any).
        return parse_formulas(text_, version=version, known_tests=_formula_inputs(catalog, limits))
    return parse_reflexes(text_, version=version, known_tests=units)


# ---------------------------------------------------------------------------- changes


def _kind(kind: str) -> RuleKind:
    try:
        return RuleKind(kind)
    except ValueError:
        raise InvalidInput.field(
            "kind", f"unknown kind {kind!r} (autoverification, formulas or reflex)"
        ) from None


def load(
    session: Session,
    *,
    actor: Actor,
    kind: str,
    document: str,
    description: str = "",
    limits_from: RuleSet | None = None,
) -> RuleSetVersion:
    """Store a new draft version after checking it; the version number is the next free one.

    A formula document is checked against the plausibility limits of `limits_from`, by default
    those of the active autoverification rule set."""
    rule_kind = _kind(kind)
    if len(document) > MAX_TEXT:
        raise InvalidInput.field("text", f"a rule document is at most {MAX_TEXT} characters")
    # One loader per kind at a time, so two loads cannot take the same number.
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"rule_set:{kind}"}
    )
    latest = session.scalar(
        select(func.max(RuleSetVersion.version)).where(RuleSetVersion.kind == rule_kind.value)
    )
    number = (latest or 0) + 1
    # Refuses before storing.
    parse(session, kind=rule_kind, text_=document, version=number, limits_from=limits_from)
    row = RuleSetVersion(
        kind=rule_kind.value,
        version=number,
        text=document,
        sha256=hashlib.sha256(document.encode("utf-8")).hexdigest(),
        description=description.strip()[:2000],
        state=RuleState.DRAFT.value,
        created_by=actor.username,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="ruleset.load",
        entity_type="rule_set_version",
        entity_id=row.id,
        after={"kind": row.kind, "version": row.version, "sha256": row.sha256},
    )
    return row


def get(session: Session, *, kind: str, version: int) -> RuleSetVersion:
    row = session.scalar(
        select(RuleSetVersion).where(
            RuleSetVersion.kind == _kind(kind).value, RuleSetVersion.version == version
        )
    )
    if row is None:
        raise NotFound(f"no {kind} rule set version {version}")
    return row


def list_versions(session: Session, *, kind: str | None = None) -> list[RuleSetVersion]:
    query = select(RuleSetVersion).order_by(RuleSetVersion.kind, RuleSetVersion.version)
    if kind is not None:
        query = query.where(RuleSetVersion.kind == _kind(kind).value)
    return list(session.scalars(query))


def change_state(
    session: Session, *, actor: Actor, kind: str, version: int, state: str
) -> RuleSetVersion:
    """Activate a version, run it in shadow, or take it back to draft (from shadow).

    Activation retires the version that was active; starting a shadow sends the previous shadow
    back to draft. Both re-check the document against today's catalog first.
    """
    try:
        target = RuleState(state)
    except ValueError:
        raise InvalidInput.field("state", "must be active, shadow or draft") from None
    if target is RuleState.RETIRED:
        raise InvalidInput.field("state", "a version is retired by activating another one")
    needed = Permission.ACTIVATE_RULES if target is RuleState.ACTIVE else Permission.MANAGE_RULES
    if needed not in permissions_of(sorted(actor.roles)):
        raise PermissionDenied(f"{actor.username} may not make a rule set {target.value}")
    row = session.scalar(
        select(RuleSetVersion)
        .where(RuleSetVersion.kind == _kind(kind).value, RuleSetVersion.version == version)
        .with_for_update()
    )
    if row is None:
        raise NotFound(f"no {kind} rule set version {version}")
    if row.state == target.value:
        return row
    if row.state == RuleState.RETIRED.value and target is not RuleState.ACTIVE:
        raise Conflict(f"{kind} v{version} is retired; it can only be activated again")
    if target is RuleState.DRAFT and row.state != RuleState.SHADOW.value:
        raise Conflict(
            f"only a version in shadow goes back to draft ({kind} v{version} is {row.state})"
        )
    parsed = parse(session, kind=RuleKind(row.kind), text_=row.text, version=row.version)
    if target is RuleState.ACTIVE and isinstance(parsed, RuleSet):
        _formulas_still_hold(session, parsed)
    before = {"state": row.state}
    now = utcnow()
    if target in (RuleState.ACTIVE, RuleState.SHADOW):
        previous = session.scalar(
            select(RuleSetVersion)
            .where(RuleSetVersion.kind == row.kind, RuleSetVersion.state == target.value)
            .with_for_update()
        )
        if previous is not None:
            previous.state = (
                RuleState.RETIRED.value if target is RuleState.ACTIVE else RuleState.DRAFT.value
            )
            previous.state_changed_at, previous.state_changed_by = now, actor.username
            session.flush()  # the partial unique index sees one active/shadow row at a time
            audit.record(
                session,
                actor=actor,
                action=f"ruleset.{previous.state}",
                entity_type="rule_set_version",
                entity_id=previous.id,
                before={"state": target.value},
                after={"state": previous.state, "kind": previous.kind, "version": previous.version},
            )
    row.state = target.value
    row.state_changed_at, row.state_changed_by = now, actor.username
    if target is RuleState.ACTIVE:
        row.activated_at, row.activated_by = now, actor.username
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=f"ruleset.{target.value}",
        entity_type="rule_set_version",
        entity_id=row.id,
        before=before,
        after={"state": row.state, "kind": row.kind, "version": row.version, "sha256": row.sha256},
    )
    _forget(session)
    return row


def _formulas_still_hold(session: Session, candidate: RuleSet) -> None:
    """The active formulas divide only by inputs the candidate's plausibility limits keep above
    zero; a rule set that takes such a limit away is refused, so nothing half-works."""
    formulas = session.scalar(
        select(RuleSetVersion).where(
            RuleSetVersion.kind == RuleKind.FORMULAS.value,
            RuleSetVersion.state == RuleState.ACTIVE.value,
        )
    )
    if formulas is None:
        return
    try:
        parse(
            session,
            kind=RuleKind.FORMULAS,
            text_=formulas.text,
            version=formulas.version,
            limits_from=candidate,
        )
    except RuleSetError as error:
        raise Conflict(
            f"autoverification v{candidate.version} would break the active formulas "
            f"v{formulas.version}: {error.message}",
            problems=error.problems,
        ) from None


def seed_demo(session: Session, *, actor: Actor, active: bool = True) -> list[RuleSetVersion]:
    """Version 1 of each demo document, active, on a database that has none of that kind.

    With `active` false they are stored as drafts (a test database: nothing is released without
    a person until a test activates them)."""
    loaded: list[RuleSetVersion] = []
    texts = demo_texts()
    # The demo formulas divide by creatinine: checked against the demo plausibility limits.
    limits = parse(
        session,
        kind=RuleKind.AUTOVERIFICATION,
        text_=texts[RuleKind.AUTOVERIFICATION.value],
        version=1,
    )
    for kind in (RuleKind.AUTOVERIFICATION, RuleKind.FORMULAS, RuleKind.REFLEX):
        exists = session.scalar(
            select(RuleSetVersion.id).where(RuleSetVersion.kind == kind.value).limit(1)
        )
        if exists is not None:
            continue
        row = load(
            session,
            actor=actor,
            kind=kind.value,
            document=texts[kind.value],
            description="demo rules v1",
            limits_from=limits if isinstance(limits, RuleSet) else None,
        )
        loaded.append(row)
        if not active:
            continue
        row.state = RuleState.ACTIVE.value
        row.activated_at = row.state_changed_at = utcnow()
        row.activated_by = row.state_changed_by = actor.username
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="ruleset.active",
            entity_type="rule_set_version",
            entity_id=row.id,
            after={"state": row.state, "kind": row.kind, "version": row.version},
            detail="demo seed",
        )
        _forget(session)
    return loaded


# ---------------------------------------------------------------------------- reading


def _forget(session: Session) -> None:
    """A state changed in this transaction: its next question reads the stamp again."""
    facts.forget(session)


@dataclass(frozen=True, slots=True, kw_only=True)
class _InForce:
    """The active and shadow versions of one stamp, parsed; shared by every transaction whose
    stamp (and catalog) is the same, so nothing in it is ever changed."""

    loaded: dict[tuple[RuleKind, RuleState], LoadedVersion]
    active: ActiveRules  # with the autoverification version in shadow, if one runs
    shadow: ActiveRules


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        # per database: the key (catalog version, rule set part of the stamp) and its versions
        self.in_force: dict[URL, tuple[tuple[tuple[int, str], str], _InForce]] = {}


_cache = _Cache()
_SESSION_KEY = "rule_sets_in_force"


def _in_force(session: Session) -> _InForce:
    """The versions in force for this transaction's stamp: parsed once per process while the
    rule sets and the catalog stay as they are (a transaction that changed the catalog parses
    against its own, and keeps that to itself)."""
    stamp = facts.stamp(session)
    known: tuple[facts.Stamp, _InForce] | None = session.info.get(_SESSION_KEY)
    if known is not None and known[0] is stamp:
        return known[1]
    shared = not catalog_changing(session)
    key = (stamp.catalog, stamp.rules)
    database = facts.database_of(session)
    found: _InForce | None = None
    if shared:
        with _cache.lock:
            entry = _cache.in_force.get(database)
        if entry is not None and entry[0] == key:
            found = entry[1]
    if found is None:
        found = _parse_in_force(session, stamp.rules)
        if shared:
            with _cache.lock:
                _cache.in_force[database] = (key, found)
    session.info[_SESSION_KEY] = (stamp, found)
    return found


def _parse_in_force(session: Session, rules: str) -> _InForce:
    """Parse the versions the stamp names (their texts in one query): the active
    autoverification version first, as the formulas are checked against its limits."""
    named: dict[tuple[RuleKind, RuleState], tuple[int, int]] = {}
    for line in rules.split(facts.ROW) if rules else ():
        kind, state, number, version, _sha = line.split(facts.FIELD)
        named[(RuleKind(kind), RuleState(state))] = (int(number), int(version))
    ids = [row_id for row_id, _ in named.values()]
    texts: dict[int, str] = {}
    if ids:
        query = select(RuleSetVersion.id, RuleSetVersion.text).where(RuleSetVersion.id.in_(ids))
        texts = {row_id: document for row_id, document in session.execute(query)}
    loaded: dict[tuple[RuleKind, RuleState], LoadedVersion] = {}
    limits: RuleSet | None = None
    order = sorted(named, key=lambda ks: (ks[0] is not RuleKind.AUTOVERIFICATION, ks[1].value))
    for kind, state in order:
        row_id, row_version = named[(kind, state)]
        parsed = _parse(session, kind=kind, text_=texts[row_id], version=row_version, limits=limits)
        if (kind, state) == (RuleKind.AUTOVERIFICATION, RuleState.ACTIVE):
            assert isinstance(parsed, RuleSet)
            limits = parsed
        loaded[(kind, state)] = LoadedVersion(
            id=row_id, kind=kind, version=row_version, state=state, parsed=parsed
        )
    bundle = _bundle(loaded, RuleState.ACTIVE)
    in_shadow = loaded.get((RuleKind.AUTOVERIFICATION, RuleState.SHADOW))
    if in_shadow is not None and isinstance(in_shadow.parsed, RuleSet):
        bundle = replace(bundle, shadow=in_shadow.parsed, shadow_id=in_shadow.id)
    return _InForce(loaded=loaded, active=bundle, shadow=_bundle(loaded, RuleState.SHADOW))


def _loaded(session: Session, kind: RuleKind, state: RuleState) -> LoadedVersion | None:
    return _in_force(session).loaded.get((kind, state))


def active(session: Session, *, kind: RuleKind) -> LoadedVersion | None:
    return _loaded(session, kind, RuleState.ACTIVE)


def shadow(session: Session, *, kind: RuleKind) -> LoadedVersion | None:
    return _loaded(session, kind, RuleState.SHADOW)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveRules:
    """The rule documents in force (or in shadow) for one transaction; None: no version.

    Each parsed document carries its version (`RuleSet.version`, ...); `ids` maps the kind to
    the `rule_set_version` row. `shadow` is the autoverification version running in shadow
    beside the active one (its row is `shadow_id`): the recording path judges each result with
    it too and keeps what it decided (`record_shadow`), acting on nothing."""

    autoverification: RuleSet | None = None
    formulas: FormulaSet | None = None
    reflex: ReflexSet | None = None
    ids: dict[str, int] = field(default_factory=dict)
    shadow: RuleSet | None = None
    shadow_id: int | None = None


def _bundle(
    loaded: dict[tuple[RuleKind, RuleState], LoadedVersion], state: RuleState
) -> ActiveRules:
    found = {kind: loaded.get((kind, state)) for kind in RuleKind}
    auto = found[RuleKind.AUTOVERIFICATION]
    formulas = found[RuleKind.FORMULAS]
    reflex = found[RuleKind.REFLEX]
    return ActiveRules(
        autoverification=auto.parsed if auto and isinstance(auto.parsed, RuleSet) else None,
        formulas=formulas.parsed if formulas and isinstance(formulas.parsed, FormulaSet) else None,
        reflex=reflex.parsed if reflex and isinstance(reflex.parsed, ReflexSet) else None,
        ids={kind.value: one.id for kind, one in found.items() if one is not None},
    )


def active_rules(session: Session) -> ActiveRules:
    """The active version of each kind, with the autoverification version in shadow if one
    runs: parsed once per process, checked with the transaction's stamp (the recording path's
    call). The same object is shared by every caller: read it, never change it."""
    return _in_force(session).active


def shadow_rules(session: Session) -> ActiveRules:
    """The versions running in shadow (their decisions are recorded, never acted on)."""
    return _in_force(session).shadow


def active_ruleset(session: Session) -> RuleSet | None:
    """The active autoverification rule set (None: nothing is released without a person)."""
    loaded = active(session, kind=RuleKind.AUTOVERIFICATION)
    return loaded.parsed if loaded is not None and isinstance(loaded.parsed, RuleSet) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowDecision:
    """What the version in shadow decided for one version of a result."""

    result_id: int
    result_version: int
    autoverify: bool
    holds: tuple[Hold, ...]


def record_shadow(
    session: Session, *, rule_set_version_id: int, decisions: Sequence[ShadowDecision]
) -> None:
    """Keep what the shadow version decided (one INSERT for them all); it releases nothing."""
    if not decisions:
        return
    session.execute(
        insert(RuleShadowDecision),
        [
            {
                "result_id": d.result_id,
                "result_version": d.result_version,
                "rule_set_version_id": rule_set_version_id,
                "autoverify": d.autoverify,
                "holds": [
                    {"code": h.code.value, "text": h.text, "key": h.key, "params": dict(h.params)}
                    for h in d.holds
                ],
            }
            for d in decisions
        ],
    )


def snapshot(row: RuleSetVersion) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "version": row.version,
        "state": row.state,
        "sha256": row.sha256,
        "description": row.description,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "created_by": row.created_by,
        "activated_at": row.activated_at.isoformat() if row.activated_at else None,
        "activated_by": row.activated_by,
    }


__all__ = [
    "ActiveRules",
    "LoadedVersion",
    "ShadowDecision",
    "active",
    "active_rules",
    "active_ruleset",
    "change_state",
    "get",
    "list_versions",
    "load",
    "parse",
    "record_shadow",
    "seed_demo",
    "shadow",
    "shadow_rules",
]
