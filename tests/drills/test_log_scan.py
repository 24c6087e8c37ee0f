"""The drills' log scan (`python -m drills` fails a drill whose `lab serve` log names a patient)."""

from __future__ import annotations

from pathlib import Path

from drills.common import patient_data_in_logs
from testkit.patients import synthetic_patients


def test_the_scan_finds_national_numbers_and_names_and_says_where_not_what(
    tmp_path: Path,
) -> None:
    patient = synthetic_patients(1)[0]
    clean = tmp_path / "a" / "lab-serve.log"
    clean.parent.mkdir()
    clean.write_text("INFO hl7: C-123 OBR[2]-4 204 Unknown key identifier; 2612010001 received\n")
    assert patient_data_in_logs(tmp_path) == []
    leaky = tmp_path / "b" / "lab-serve.log"
    leaky.parent.mkdir()
    leaky.write_text(f"ERROR Key (value)=({patient.fnr}) already exists; {patient.family}\n")
    record = tmp_path / "b" / "record.log"  # the record's own log may show what it received
    record.write_text(f"{patient.fnr} {patient.family}\n")
    found = patient_data_in_logs(tmp_path)
    assert found == [
        "b/lab-serve.log holds a national number",
        "b/lab-serve.log holds 1 patient name(s)",
    ]
    assert not any(patient.fnr in line or patient.family in line for line in found)
