"""Fast versions of drills 3 and 4 (`make drill` runs the long ones): a receiver down for a few
seconds, and a noisy serial line for a dozen specimens, against a real `lab serve` on the
committed test database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drills import receiver_down, serial_noise
from testkit.database import ScratchDatabase

pytestmark = pytest.mark.slow


def test_results_reach_a_record_that_was_down_once_each_in_order(
    committed_database: ScratchDatabase, tmp_path: Path
) -> None:
    result = asyncio.run(
        receiver_down._drill(committed_database.url, tmp_path, patients=3, per_patient=2, down=3)
    )
    assert result.ok, result.summary


def test_a_noisy_serial_line_stores_only_what_was_sent(
    committed_database: ScratchDatabase, tmp_path: Path
) -> None:
    result = asyncio.run(
        serial_noise._drill(committed_database.url, tmp_path, specimens=12, noise=0.01, seed=11)
    )
    assert result.ok, result.summary
    assert "bytes corrupted" in result.summary
