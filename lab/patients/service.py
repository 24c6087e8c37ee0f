"""Patients: identity from the record, validated; demographics; merges that keep everything."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date

from sqlalchemy import ColumnElement, and_, false, func, or_, select, text, update
from sqlalchemy.orm import Mapped, Session, make_transient_to_detached

from lab import audit
from lab.audit import Actor
from lab.db import driver_sql
from lab.errors import Conflict, FieldProblem, InvalidInput, NotFound
from lab.patients.identifiers import (
    IdentifierError,
    IdentifierKind,
    kind_for,
    parse_national_identifier,
)
from lab.tables import Order, Patient, PatientIdentifier, PatientMerge, Result, Specimen

VALID_SEX = {"F", "M", "O", "U"}


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentifierInput:
    value: str
    authority: str = ""
    type_code: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Demographics:
    identifiers: list[IdentifierInput]
    family_name: str
    given_name: str = ""
    birth_date: date | None = None
    sex: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckedIdentifier:
    value: str
    authority: str
    kind: IdentifierKind
    birth_date: date | None
    sex: str | None


def check_identifier(ident: IdentifierInput, *, field: str) -> CheckedIdentifier:
    """Validate national numbers (check digits, D/H rules); accept others as they are."""
    kind = kind_for(ident.authority, ident.type_code)
    value = ident.value.strip()
    if not value:
        raise InvalidInput.field(field, "the identifier is empty", code="identifier_empty")
    if kind is IdentifierKind.OTHER:
        return CheckedIdentifier(
            value=value, authority=ident.authority.strip(), kind=kind, birth_date=None, sex=None
        )
    try:
        parsed = parse_national_identifier(value)
    except IdentifierError as exc:
        raise InvalidInput.field(
            field, f"invalid {kind.value}: {exc}", code=exc.code, params={"kind": kind.value}
        ) from exc
    # Help numbers were once issued with first digit 8 or 9 as well: either form is a help number.
    help_numbers = {IdentifierKind.HNR, IdentifierKind.FHN}
    if parsed.kind is not kind and not {parsed.kind, kind} <= help_numbers:
        raise InvalidInput.field(
            field,
            f"the number is a {parsed.kind.value}, but was sent as {kind.value}",
            code="identifier_kind",
            params={"found": parsed.kind.value, "sent": kind.value},
        )
    # National identifiers are stored under their kind, so an OID and a plain name match.
    return CheckedIdentifier(
        value=parsed.value,
        authority=parsed.kind.value,
        kind=parsed.kind,
        birth_date=parsed.birth_date,
        sex=parsed.sex,
    )


def check_demographics(data: Demographics) -> list[CheckedIdentifier]:
    problems: list[FieldProblem] = []
    checked: list[CheckedIdentifier] = []
    for index, ident in enumerate(data.identifiers):
        try:
            checked.append(check_identifier(ident, field=f"identifiers[{index}]"))
        except InvalidInput as exc:
            problems.extend(exc.problems)
    if not data.identifiers:
        problems.append(
            FieldProblem("identifiers", "at least one identifier is needed", "identifiers_missing")
        )
    if not data.family_name.strip():
        problems.append(
            FieldProblem("family_name", "the family name is missing", "family_name_missing")
        )
    if data.sex is not None and data.sex not in VALID_SEX:
        problems.append(FieldProblem("sex", "use F, M, O or U", "sex_unknown"))
    for national in checked:
        if (
            national.kind is IdentifierKind.FNR
            and data.birth_date is not None
            and national.birth_date != data.birth_date
        ):
            problems.append(
                FieldProblem(
                    "birth_date",
                    "does not match the birth date in the fødselsnummer",
                    "birth_date_mismatch",
                )
            )
    if problems:
        raise InvalidInput(problems[0].message, problems=problems)
    return checked


def find_by_identifier(session: Session, value: str, authority: str = "") -> Patient | None:
    """The patient with this identifier, following merges to the surviving patient."""
    query = select(PatientIdentifier).where(PatientIdentifier.value == value.strip())
    if authority:
        checked_authority = kind_for(authority, "")
        wanted = (
            checked_authority.value
            if checked_authority is not IdentifierKind.OTHER
            else authority.strip()
        )
        query = query.where(PatientIdentifier.authority == wanted)
    ident = session.scalars(query).first()
    if ident is None:
        return None
    return surviving(session, ident.patient)


def surviving(session: Session, patient: Patient) -> Patient:
    seen = {patient.id}
    while patient.merged_into_id is not None:
        nxt = session.get(Patient, patient.merged_into_id)
        if nxt is None or nxt.id in seen:
            break
        seen.add(nxt.id)
        patient = nxt
    return patient


# The patient of the first identifier (in the order given) that is known, or, when none is, a
# new patient with all its identifiers and its audit row. An identifier without authority
# matches any authority, as in `find_by_identifier`. `created` says which it was; a merged
# patient is followed to the surviving one by the caller.
_FIND_OR_REGISTER = driver_sql(
    text(
        """
    WITH wanted AS (
        SELECT * FROM unnest(CAST(:values AS VARCHAR[]), CAST(:authorities AS VARCHAR[]),
            CAST(:kinds AS VARCHAR[])) WITH ORDINALITY AS u(value, authority, kind, place)
    ), known AS (
        SELECT i.patient_id FROM wanted
        JOIN patient_identifier i
            ON i.value = wanted.value AND (wanted.authority = '' OR i.authority = wanted.authority)
        ORDER BY wanted.place, i.id
        LIMIT 1
    ), registered AS (
        INSERT INTO patient (family_name, given_name, birth_date, sex)
        SELECT CAST(:family_name AS VARCHAR), CAST(:given_name AS VARCHAR),
            CAST(:birth_date AS DATE), CAST(:sex AS VARCHAR)
        WHERE NOT EXISTS (SELECT FROM known)
        RETURNING id, created_at
    ), identifier AS (
        INSERT INTO patient_identifier (patient_id, value, authority, kind)
        SELECT registered.id, wanted.value, wanted.authority, wanted.kind
        FROM registered, wanted ORDER BY wanted.place
    ), audited AS (
        INSERT INTO audit_event (actor_user_id, actor_name, channel, action, entity_type,
            entity_id, patient_id, before, after, detail, via)
        SELECT CAST(:actor_user_id AS BIGINT), CAST(:actor_name AS VARCHAR),
            CAST(:channel AS VARCHAR), 'patient.create', 'patient', registered.id::text,
            registered.id, 'null'::jsonb, CAST(:after AS JSONB), '', CAST(:via AS VARCHAR)
        FROM registered
    )
    SELECT id, true AS created, created_at FROM registered
    UNION ALL
    SELECT patient_id, false, NULL FROM known
    """
    )
)


def upsert(session: Session, *, actor: Actor, data: Demographics) -> Patient:
    """Find the patient by any of the identifiers and update, or register a new one.

    One statement looks the identifiers up and, when none is known, registers the patient
    with its identifiers and audit row; only a known patient is read and updated through the
    ORM.
    """
    checked = check_demographics(data)
    national = next((i for i in checked if i.birth_date is not None), None)
    birth_date = data.birth_date or (national.birth_date if national else None)
    sex = data.sex or (national.sex if national else None) or "U"
    family_name, given_name = data.family_name.strip(), data.given_name.strip()
    # On the session's connection: a Core statement needs none of the ORM's handling.
    connection = session.connection()
    registered = connection.exec_driver_sql(
        _FIND_OR_REGISTER,
        {
            "values": [i.value for i in checked],
            "authorities": [i.authority for i in checked],
            "kinds": [i.kind.value for i in checked],
            "family_name": family_name,
            "given_name": given_name,
            "birth_date": birth_date,
            "sex": sex,
            "actor_user_id": actor.user_id,
            "actor_name": actor.username,
            "channel": actor.channel,
            "via": actor.via[:200],
            "after": json.dumps(
                {
                    "family_name": family_name,
                    "given_name": given_name,
                    "birth_date": birth_date.isoformat() if birth_date else None,
                    "sex": sex,
                    "identifiers": sorted(f"{i.authority}:{i.value}" for i in checked),
                }
            ),
        },
    ).one()
    if registered.created:
        patient = Patient(
            id=registered.id,
            family_name=family_name,
            given_name=given_name,
            birth_date=birth_date,
            sex=sex,
            merged_into_id=None,
            created_at=registered.created_at,
            updated_at=registered.created_at,
        )
        make_transient_to_detached(patient)
        session.add(patient)  # persistent: its identifiers load when first read
        return patient
    found = session.get(Patient, registered.id)
    if found is None:  # pragma: no cover - the identifier's foreign key
        raise NotFound(f"no patient {registered.id}")
    patient = surviving(session, found)
    before = snapshot(patient)
    patient.family_name = family_name
    patient.given_name = given_name
    if birth_date is not None:
        patient.birth_date = birth_date
    if data.sex is not None or patient.sex == "U":
        patient.sex = sex
    known = {(i.authority, i.value) for i in patient.identifiers}
    for ident in checked:
        if (ident.authority, ident.value) in known:
            continue
        owner = session.scalar(
            select(PatientIdentifier).where(
                PatientIdentifier.authority == ident.authority,
                PatientIdentifier.value == ident.value,
            )
        )
        if owner is not None and surviving(session, owner.patient).id != patient.id:
            raise Conflict(
                f"identifier {ident.authority} belongs to another patient; merge them first"
            )
        if owner is None:
            patient.identifiers.append(
                PatientIdentifier(value=ident.value, authority=ident.authority, kind=ident.kind)
            )
    session.flush()
    after = snapshot(patient)
    if before != after:
        audit.record(
            session,
            actor=actor,
            action="patient.update",
            entity_type="patient",
            entity_id=patient.id,
            patient_id=patient.id,
            before=before,
            after=after,
        )
    return patient


def get(session: Session, patient_id: int, *, actor: Actor) -> Patient:
    """Read one patient; the look is audited."""
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFound(
            f"no patient {patient_id}", code="patient_unknown", params={"id": patient_id}
        )
    audit.record_read(
        session, actor=actor, patient_id=patient.id, what="patient", entity_id=patient.id
    )
    return patient


def _name_words(text: str) -> list[str]:
    """`Johansen, B` and `Bjørn Johansen` alike: the words of a name, lower case."""
    return [word for word in re.split(r"[\s,]+", text.lower()) if word]


def _word_starts(column: Mapped[str], word: str) -> ColumnElement[bool]:
    """The column has a word (after a space or hyphen, or at the start) beginning with `word`."""
    escaped = word.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
    lowered = func.lower(column)
    return or_(
        lowered.like(escaped + "%"),
        lowered.like("% " + escaped + "%"),
        lowered.like("%-" + escaped + "%"),
    )


def several(session: Session, patient_ids: set[int], *, actor: Actor) -> list[Patient]:
    """Read several patients in one query (a list that names them); each look is audited."""
    if not patient_ids:
        return []
    found = list(session.scalars(select(Patient).where(Patient.id.in_(patient_ids))))
    audit.record_rows(
        session,
        [
            audit.row(
                actor=actor,
                action="read.patient.list",
                entity_type="patient",
                entity_id=patient.id,
                patient_id=patient.id,
            )
            for patient in found
        ],
    )
    return found


def search(session: Session, *, actor: Actor, text: str, limit: int = 50) -> list[Patient]:
    """By identifier (exact) or name, case-insensitive.

    Each word typed must begin a word of the family or given name, in any order: `Bjørn
    Johansen`, `johansen, b`, `johan` and `Hansen-Berg` (for Eli Hansen-Berg, also `berg`).
    With a comma, the words before it are the family name and those after it the given name,
    as a name is written on a requisition.
    """
    term = text.strip()
    if len(term) < 2:
        raise InvalidInput.field("q", "type at least two characters", code="search_too_short")
    by_ident = select(PatientIdentifier.patient_id).where(PatientIdentifier.value == term)
    if "," in term:
        family_part, _, given_part = term.partition(",")
        conditions = [_word_starts(Patient.family_name, w) for w in _name_words(family_part)]
        conditions += [_word_starts(Patient.given_name, w) for w in _name_words(given_part)]
    else:
        conditions = [
            or_(_word_starts(Patient.family_name, w), _word_starts(Patient.given_name, w))
            for w in _name_words(term)
        ]
    by_name = and_(*conditions) if conditions else false()
    query = (
        select(Patient)
        .where(or_(Patient.id.in_(by_ident), by_name), Patient.merged_into_id.is_(None))
        .order_by(Patient.family_name, Patient.given_name)
        .limit(limit)
    )
    found = list(session.scalars(query))
    for patient in found:
        audit.record_read(
            session,
            actor=actor,
            patient_id=patient.id,
            what="patient.search",
            entity_id=patient.id,
            detail="found by search",
        )
    return found


def merge(
    session: Session,
    *,
    actor: Actor,
    surviving_patient_id: int,
    merged_patient_id: int,
    reason: str = "",
) -> PatientMerge:
    """Move every order, specimen and result of one patient to another, and say who did it."""
    if surviving_patient_id == merged_patient_id:
        raise InvalidInput.field("merged_patient_id", "a patient cannot be merged with itself")
    keep = session.get(Patient, surviving_patient_id, with_for_update=True)
    gone = session.get(Patient, merged_patient_id, with_for_update=True)
    if keep is None:
        raise NotFound(f"no patient {surviving_patient_id}")
    if gone is None:
        raise NotFound(f"no patient {merged_patient_id}")
    if keep.merged_into_id is not None:
        raise Conflict(f"patient {keep.id} was itself merged into {keep.merged_into_id}")
    if gone.merged_into_id is not None:
        raise Conflict(f"patient {gone.id} was already merged into {gone.merged_into_id}")
    moved = len(
        session.scalars(
            update(Order)
            .where(Order.patient_id == gone.id)
            .values(patient_id=keep.id)
            .returning(Order.id)
        ).all()
    )
    session.execute(
        update(Specimen).where(Specimen.patient_id == gone.id).values(patient_id=keep.id)
    )
    session.execute(update(Result).where(Result.patient_id == gone.id).values(patient_id=keep.id))
    session.execute(
        update(PatientIdentifier)
        .where(PatientIdentifier.patient_id == gone.id)
        .values(patient_id=keep.id)
    )
    gone.merged_into_id = keep.id
    record = PatientMerge(
        surviving_patient_id=keep.id,
        merged_patient_id=gone.id,
        merged_by=actor.username,
        moved_orders=moved,
        reason=reason,
    )
    session.add(record)
    session.flush()
    session.expire(keep)
    for patient_id in (keep.id, gone.id):
        audit.record(
            session,
            actor=actor,
            action="patient.merge",
            entity_type="patient",
            entity_id=patient_id,
            patient_id=patient_id,
            before={"merged_patient_id": gone.id},
            after={"surviving_patient_id": keep.id, "moved_orders": moved},
            detail=reason,
        )
    return record


def snapshot(patient: Patient) -> dict[str, object]:
    return {
        "family_name": patient.family_name,
        "given_name": patient.given_name,
        "birth_date": patient.birth_date.isoformat() if patient.birth_date else None,
        "sex": patient.sex,
        "identifiers": sorted(f"{i.authority}:{i.value}" for i in patient.identifiers),
    }


def age_in_days(patient: Patient, on: date) -> int | None:
    if patient.birth_date is None:
        return None
    return (on - patient.birth_date).days
