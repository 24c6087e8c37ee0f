"""Fast versions of drills 3 and 4 (`make drill` runs the long ones): a receiver down for a few
seconds, and a noisy serial line for a dozen specimens, against a real `lab serve` on the
committed test database. The `lab serve` log of each is scanned for patient data after it."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from drills import receiver_down, serial_noise
from testkit.database import ScratchDatabase
from testkit.patients import synthetic_patients

pytestmark = pytest.mark.slow


def test_results_reach_a_record_that_was_down_once_each_in_order(
    committed_database: ScratchDatabase, tmp_path: Path
) -> None:
    result = asyncio.run(
        receiver_down._drill(committed_database.url, tmp_path, patients=3, per_patient=2, down=3)
    )
    assert result.ok, result.summary
    no_patient_data_in_the_logs(tmp_path)


def test_a_noisy_serial_line_stores_only_what_was_sent(
    committed_database: ScratchDatabase, tmp_path: Path
) -> None:
    result = asyncio.run(
        serial_noise._drill(committed_database.url, tmp_path, specimens=12, noise=0.01, seed=11)
    )
    assert result.ok, result.summary
    assert "bytes corrupted" in result.summary
    no_patient_data_in_the_logs(tmp_path)


FNR = re.compile(r"(?<!\d)\d{6}[ -]?\d{5}(?!\d)")  # a fødselsnummer, D- or H-number


def no_patient_data_in_the_logs(folder: Path) -> None:
    """The drill's `lab serve` log names no patient: no national number, none of the synthetic
    patients' family names. (The fake record's own log, `record.log`, is the receiving side's
    and shows what it got, patients included.)"""
    families = {patient.family for patient in synthetic_patients(12)}
    logs = list(folder.rglob("lab-serve.log"))
    assert logs, "the drill left no log to scan"
    for log in logs:
        text = log.read_text(encoding="utf-8", errors="replace")
        assert not FNR.search(text), (log.name, FNR.search(text))
        assert not [name for name in families if name in text], log.name
