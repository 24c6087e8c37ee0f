"""The QC lock as a fold over stored runs and overrides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from lab.qc.lock import IN_CONTROL, EventKind, LockState, QcEvent, changes, fold, order_key, step

T0 = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)


def run_event(minute: int, *, rejected: bool = False, all_levels: bool = True) -> QcEvent:
    return QcEvent(
        at=T0 + timedelta(minutes=minute),
        sequence=minute,
        kind=EventKind.RUN,
        rejected=rejected,
        all_levels=all_levels,
        rule="1-3s" if rejected else "",
        run_id=minute,
    )


def override(minute: int) -> QcEvent:
    return QcEvent(at=T0 + timedelta(minutes=minute), sequence=minute, kind=EventKind.OVERRIDE)


def test_no_events_is_in_control() -> None:
    assert fold([]) == IN_CONTROL


def test_a_rejected_run_locks_with_its_rule() -> None:
    lock = fold([run_event(1), run_event(2, rejected=True)])
    assert lock.state is LockState.LOCKED
    assert lock.rule == "1-3s" and lock.run_id == 2


def test_an_accepted_run_of_every_level_unlocks() -> None:
    assert fold([run_event(1, rejected=True), run_event(2)]).state is LockState.IN_CONTROL


def test_an_accepted_run_missing_a_level_does_not_unlock() -> None:
    lock = fold([run_event(1, rejected=True), run_event(2, all_levels=False)])
    assert lock.locked


def test_an_override_unlocks_and_an_override_when_in_control_changes_nothing() -> None:
    assert not fold([run_event(1, rejected=True), override(2)]).locked
    assert fold([override(1)]) == IN_CONTROL


def test_events_are_taken_in_time_order_not_the_order_given() -> None:
    events = [run_event(5), run_event(1, rejected=True)]
    assert not fold(events).locked
    assert fold([run_event(5, rejected=True), run_event(1)]).locked


events_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=500),
        st.sampled_from(["accepted", "accepted_partial", "rejected", "override"]),
    ),
    max_size=30,
    unique_by=lambda e: e[0],
).map(
    lambda rows: [
        override(minute)
        if kind == "override"
        else run_event(minute, rejected=kind == "rejected", all_levels=kind != "accepted_partial")
        for minute, kind in rows
    ]
)


@given(events_strategy, st.randoms())
@settings(max_examples=300)
def test_the_lock_depends_on_the_stored_events_alone(events: list[QcEvent], rnd: object) -> None:
    import random

    assert isinstance(rnd, random.Random)
    shuffled = rnd.sample(events, len(events))
    assert fold(shuffled) == fold(events)


@given(events_strategy)
@settings(max_examples=300)
def test_locked_exactly_when_the_last_deciding_event_was_a_rejection(
    events: list[QcEvent],
) -> None:
    ordered = sorted(events, key=order_key)
    deciding = [
        e
        for e in ordered
        if e.kind is EventKind.OVERRIDE or e.rejected or (e.kind is EventKind.RUN and e.all_levels)
    ]
    expected = bool(deciding) and deciding[-1].rejected
    assert fold(events).locked == expected
    # and stepping one event at a time (what the service does as events arrive) agrees
    current = IN_CONTROL
    for event in ordered:
        current = step(current, event)
    assert current == fold(events)


@given(events_strategy, st.randoms())
@settings(max_examples=300)
def test_the_changes_alternate_from_locked_and_end_where_the_fold_ends(
    events: list[QcEvent], rnd: object
) -> None:
    import random

    assert isinstance(rnd, random.Random)
    found = changes(rnd.sample(events, len(events)))
    assert found == changes(events)  # stored order does not matter
    assert [c.after.locked for c in found] == [i % 2 == 0 for i in range(len(found))]
    assert all(c.before.state is not c.after.state for c in found)
    last_state = found[-1].after.state if found else LockState.IN_CONTROL
    assert fold(events).state is last_state


def test_a_release_names_the_run_that_held_the_lock() -> None:
    # A second rejection while locked changes no state; the override releases its lock.
    locked, released = changes(
        [run_event(1, rejected=True), run_event(3, rejected=True), override(4)]
    )
    assert locked.after.run_id == 1 and locked.after.rule == "1-3s"
    assert released.event.kind is EventKind.OVERRIDE and released.before.run_id == 3
    locked, released = changes([run_event(1, rejected=True), run_event(2)])
    assert released.event.run_id == 2 and released.before.run_id == 1
