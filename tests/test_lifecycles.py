"""The transition table of every lifecycle (lab/tables/*.py), and its named sets."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from lab.errors import Conflict
from lab.tables import (
    HL7_INBOUND_STATUSES,
    HL7_LIFECYCLE,
    HL7_OUTBOUND_STATUSES,
    HL7_UNDELIVERED,
    HL7_WAITING,
    ORDER_CLOSED,
    ORDER_LIFECYCLE,
    RELEASED,
    REPORTABLE,
    RESULT_LIFECYCLE,
    SPECIMEN_FINISHED,
    SPECIMEN_IN_LAB,
    SPECIMEN_LIFECYCLE,
    SPECIMEN_NOT_YET_IN_LAB,
    TEST_CLOSED,
    TEST_LIFECYCLE,
    TEST_OPEN,
    TEST_PENDING,
    Hl7Status,
    Lifecycle,
    OrderStatus,
    ResultStatus,
    Specimen,
    SpecimenStatus,
    sql_list,
)
from lab.tables import TestStatus as OrderedTestStatus

ROOT = Path(__file__).resolve().parents[1]
LIFECYCLES: list[Lifecycle[StrEnum]] = [
    SPECIMEN_LIFECYCLE,  # type: ignore[list-item]
    TEST_LIFECYCLE,  # type: ignore[list-item]
    ORDER_LIFECYCLE,  # type: ignore[list-item]
    RESULT_LIFECYCLE,  # type: ignore[list-item]
    HL7_LIFECYCLE,  # type: ignore[list-item]
]
PAIRS = st.sampled_from(LIFECYCLES).flatmap(
    lambda lifecycle: st.tuples(
        st.just(lifecycle),
        st.sampled_from(list(lifecycle.statuses)),
        st.sampled_from(list(lifecycle.statuses)),
    )
)


@pytest.mark.parametrize("lifecycle", LIFECYCLES, ids=lambda lifecycle: lifecycle.noun)
def test_every_status_has_a_row(lifecycle: Lifecycle[StrEnum]) -> None:
    assert set(lifecycle.moves) == set(lifecycle.statuses)
    for targets in lifecycle.moves.values():
        assert targets <= set(lifecycle.statuses)


@given(PAIRS)
def test_a_move_is_made_only_when_the_table_has_it(
    case: tuple[Lifecycle[StrEnum], StrEnum, StrEnum],
) -> None:
    lifecycle, current, target = case
    if target in lifecycle.moves[current]:
        assert lifecycle.check(current.value, target) is target
    else:
        with pytest.raises(Conflict) as refused:
            lifecycle.check(current.value, target, name="it")
        assert refused.value.http_status == 409
        assert refused.value.message.startswith("it is ")


def test_an_unknown_status_is_not_a_move() -> None:
    with pytest.raises(ValueError):
        SPECIMEN_LIFECYCLE.check("lost", SpecimenStatus.RECEIVED)


def test_the_final_statuses() -> None:
    assert SPECIMEN_LIFECYCLE.final() == {SpecimenStatus.DISPOSED}
    assert TEST_LIFECYCLE.final() == {OrderedTestStatus.CANCELLED}
    assert RESULT_LIFECYCLE.final() == {ResultStatus.CANCELLED}
    assert ORDER_LIFECYCLE.final() == frozenset()
    assert HL7_LIFECYCLE.final() == {
        Hl7Status.PROCESSED,
        Hl7Status.ERROR,
        Hl7Status.REJECTED,
        Hl7Status.ACKNOWLEDGED,
    }


def test_the_rules_the_tables_encode() -> None:
    # A preliminary value is not verified; a released one is corrected, not recorded again.
    assert not RESULT_LIFECYCLE.allows(ResultStatus.PRELIMINARY, ResultStatus.VERIFIED)
    assert not RESULT_LIFECYCLE.allows(ResultStatus.VERIFIED, ResultStatus.AWAITING_REVIEW)
    assert RESULT_LIFECYCLE.allows(ResultStatus.VERIFIED, ResultStatus.CORRECTED)
    # A rejected tube is only ever thrown away; a cancelled order takes no new test.
    assert SPECIMEN_LIFECYCLE.moves[SpecimenStatus.REJECTED] == {SpecimenStatus.DISPOSED}
    assert not ORDER_LIFECYCLE.allows(OrderStatus.CANCELLED, OrderStatus.ACTIVE)
    # Only a dead message is sent again by hand.
    assert HL7_LIFECYCLE.allows(Hl7Status.DEAD, Hl7Status.QUEUED)
    assert not HL7_LIFECYCLE.allows(Hl7Status.ACKNOWLEDGED, Hl7Status.QUEUED)


def test_the_named_sets() -> None:
    assert {SpecimenStatus.REJECTED, SpecimenStatus.DISPOSED} == SPECIMEN_FINISHED
    assert not SPECIMEN_NOT_YET_IN_LAB & SPECIMEN_IN_LAB
    assert TEST_PENDING < TEST_OPEN
    assert not TEST_OPEN & TEST_CLOSED
    assert set(OrderedTestStatus) == TEST_OPEN | TEST_CLOSED
    assert {OrderStatus.COMPLETED, OrderStatus.CANCELLED} == ORDER_CLOSED
    assert {ResultStatus.VERIFIED, ResultStatus.CORRECTED} == RELEASED
    assert {ResultStatus.VERIFIED, ResultStatus.CANCELLED} == REPORTABLE
    assert set(Hl7Status) == set(HL7_INBOUND_STATUSES) | set(HL7_OUTBOUND_STATUSES)
    assert HL7_WAITING < HL7_UNDELIVERED <= set(HL7_OUTBOUND_STATUSES)
    assert sql_list(SPECIMEN_FINISHED) == "'disposed', 'rejected'"


def test_a_named_set_serves_sql(db: Session) -> None:
    query = select(Specimen.id).where(Specimen.status.in_(SPECIMEN_FINISHED))
    compiled = query.compile(
        dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
    assert "IN ('disposed', 'rejected')" in str(compiled) or "IN ('rejected', 'disposed')" in str(
        compiled
    )
    db.execute(query).all()  # PostgreSQL takes the enum members as text


def test_the_status_words_are_typed_once() -> None:
    """Outside lab/tables the code names statuses by their enum members and named sets."""
    pattern = re.compile(r"""\(\s*["'](rejected|ordered|queued|verified|expected)["']\s*,""")
    offenders = []
    for package in ("lab", "instruments"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.is_relative_to(ROOT / "lab" / "tables"):
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert not offenders, offenders
