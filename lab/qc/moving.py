"""Patient-based real-time QC: a moving mean or median of patient results. Pure: no I/O.

Following the IFCC recommendations (Badrick T, Bietenbeck A, Cervinski MA, Katayev A, van Rossum
HH, Loh TP. Patient-Based Real-Time Quality Control: Review and Recommendations. Clin Chem
2019;65:962-71): results outside the *truncation limits* are left out (they are the patients,
not the method, speaking); the statistic is taken over a *block* of the last N included results;
an *alarm* is raised when it leaves the *control limits*. Block size, truncation and control
limits must be optimised on the lab's own patient data for each test and analyser (the paper's
simulation approach; Loh TP et al., Clin Chem Lab Med 2020 for verification with ANPed/MNPed) —
the module applies them, it does not choose them.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Statistic(StrEnum):
    MEAN = "mean"
    MEDIAN = "median"


class MovingState(StrEnum):
    NO_DATA = "no_data"  # fewer included results than one block
    IN_CONTROL = "in_control"
    ALARM = "alarm"


@dataclass(frozen=True, slots=True, kw_only=True)
class MovingSettings:
    statistic: Statistic
    block_size: int
    truncation_low: float
    truncation_high: float
    control_low: float
    control_high: float

    def __post_init__(self) -> None:
        if self.block_size < 2:
            raise ValueError("a block holds at least two results")
        if not self.truncation_low < self.truncation_high:
            raise ValueError("the low truncation limit is below the high one")
        if not self.control_low < self.control_high:
            raise ValueError("the low control limit is below the high one")


@dataclass(frozen=True, slots=True, kw_only=True)
class MovingPoint:
    index: int  # position of the newest result of the block in the series given
    value: float
    alarm: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MovingSeries:
    points: tuple[MovingPoint, ...]
    included: int
    truncated: int

    @property
    def state(self) -> MovingState:
        if not self.points:
            return MovingState.NO_DATA
        return MovingState.ALARM if self.points[-1].alarm else MovingState.IN_CONTROL

    @property
    def current(self) -> float | None:
        return self.points[-1].value if self.points else None


def moving_series(values: Sequence[float], settings: MovingSettings) -> MovingSeries:
    """The moving statistic after each included result, oldest first (values in time order)."""
    kept: list[tuple[int, float]] = [
        (i, v)
        for i, v in enumerate(values)
        if settings.truncation_low <= v <= settings.truncation_high
    ]
    compute = statistics.fmean if settings.statistic is Statistic.MEAN else statistics.median
    points: list[MovingPoint] = []
    n = settings.block_size
    for end in range(n, len(kept) + 1):
        block = [v for _, v in kept[end - n : end]]
        value = float(compute(block))
        alarm = not settings.control_low <= value <= settings.control_high
        points.append(MovingPoint(index=kept[end - 1][0], value=value, alarm=alarm))
    return MovingSeries(points=tuple(points), included=len(kept), truncated=len(values) - len(kept))
