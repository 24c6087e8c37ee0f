"""One transition table per lifecycle, checked in one place.

Each status column of the lab has a lifecycle beside its enum (lab/tables/<feature>.py): a
table of the moves a status may make, in the style of the ASTM link layer
(`instruments/astm/link.py`): a move that is not in the table raises, it is never carried out.
The named sets of statuses (`SPECIMEN_FINISHED`, `TEST_PENDING`, ...) are frozensets of enum
members, so the same name serves Python (`status in SPECIMEN_FINISHED`) and SQL
(`Specimen.status.in_(SPECIMEN_FINISHED)`); `sql_list` writes one into a raw SQL text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Generic, TypeVar

from lab.errors import Conflict

StatusT = TypeVar("StatusT", bound=StrEnum)


class Lifecycle(Generic[StatusT]):
    """The moves of one status column: `moves[current]` is every status it may become."""

    def __init__(self, noun: str, moves: Mapping[StatusT, Iterable[StatusT]]) -> None:
        self.noun = noun
        self.moves: dict[StatusT, frozenset[StatusT]] = {
            current: frozenset(targets) for current, targets in moves.items()
        }
        kinds = {type(status) for status in self.moves}
        if len(kinds) != 1:
            raise TypeError(f"the {noun} lifecycle must use one status enum")
        (self.statuses,) = kinds
        missing = set(self.statuses) - set(self.moves)
        if missing:
            raise TypeError(f"the {noun} lifecycle has no row for {sorted(missing)}")

    def allows(self, current: str, target: StatusT) -> bool:
        return target in self.moves[self.statuses(current)]

    def check(self, current: str, target: StatusT, *, name: str = "") -> StatusT:
        """`target` if the move is in the table; a `Conflict` (409) saying why if it is not."""
        if not self.allows(current, target):
            raise Conflict(
                f"{name or self.noun} is {_spoken(current)} and cannot become {_spoken(target)}",
                code="status_move",
                params={"name": name or self.noun, "status": current, "target": str(target)},
            )
        return target

    def final(self) -> frozenset[StatusT]:
        """The statuses no move leaves."""
        return frozenset(status for status, targets in self.moves.items() if not targets)


def _spoken(status: str) -> str:
    return str(status).replace("_", " ")


def sql_list(statuses: Iterable[StrEnum]) -> str:
    """`'a', 'b'` for a raw SQL text (`status IN (...)`); the values are our own constants."""
    return ", ".join(f"'{status.value}'" for status in sorted(statuses))
