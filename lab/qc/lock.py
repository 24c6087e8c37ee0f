"""Whether a test is locked on an analyser, as a function of its stored QC events. Pure.

A rejected run locks the test on that analyser at once. It is unlocked again by a later run that
is accepted and holds every level the test is controlled with on that analyser, or by a
documented override of a person whose role may do so (ISO 15189:2022 7.3.7: patient results are
reported only from a method whose control is acceptable). An accepted run that lacks a level, and
a warning, change nothing.

The service keeps one `qc_lock` row per test and analyser for the results' hot path; that row
must always equal `fold(...)` over the stored runs and overrides (a property test checks it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class LockState(StrEnum):
    IN_CONTROL = "in_control"
    LOCKED = "locked"


class EventKind(StrEnum):
    RUN = "run"
    OVERRIDE = "override"


@dataclass(frozen=True, slots=True, kw_only=True)
class QcEvent:
    """One thing that may change the lock: a judged run, or a person's override."""

    at: datetime
    sequence: int  # the stored row's id: breaks ties between events at the same moment
    kind: EventKind
    rejected: bool = False
    all_levels: bool = False  # the run held every level the test is controlled with
    rule: str = ""  # the rule that rejected it
    run_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Lock:
    state: LockState
    rule: str = ""
    run_id: int | None = None  # the run that locked it, or that (or whose override) unlocked it
    since: datetime | None = None

    @property
    def locked(self) -> bool:
        return self.state is LockState.LOCKED


IN_CONTROL = Lock(state=LockState.IN_CONTROL)


def step(current: Lock, event: QcEvent) -> Lock:
    """The lock after one more event."""
    if event.kind is EventKind.OVERRIDE:
        if current.locked:
            return Lock(state=LockState.IN_CONTROL, run_id=current.run_id, since=event.at)
        return current
    if event.rejected:
        return Lock(state=LockState.LOCKED, rule=event.rule, run_id=event.run_id, since=event.at)
    if current.locked and event.all_levels:
        return Lock(state=LockState.IN_CONTROL, run_id=event.run_id, since=event.at)
    return current


def order_key(event: QcEvent) -> tuple[datetime, int, str]:
    """Events in the order of time, then of storing (runs and overrides number apart)."""
    return (event.at, event.sequence, event.kind.value)


@dataclass(frozen=True, slots=True, kw_only=True)
class LockChange:
    """A moment the lock changed state: the event that changed it and the lock after it."""

    event: QcEvent
    before: Lock
    after: Lock


def changes(events: Iterable[QcEvent]) -> list[LockChange]:
    """Every change of state (locked, released) over the events, oldest first. A rejection
    while locked, an override while in control and a run missing a level change no state and
    are left out; the last change's lock is `fold(events)` (in control when there is none)."""
    found: list[LockChange] = []
    current = IN_CONTROL
    for event in sorted(events, key=order_key):
        after = step(current, event)
        if after.state is not current.state:
            found.append(LockChange(event=event, before=current, after=after))
        current = after
    return found


def fold(events: Iterable[QcEvent]) -> Lock:
    """The lock after every event, taken in the order of time (then of storing)."""
    current = IN_CONTROL
    for event in sorted(events, key=order_key):
        current = step(current, event)
    return current
