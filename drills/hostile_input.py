"""Drill 5: a long fuzz run of malformed and hostile input on every listener.

It runs tests/test_hostile_input.py (MLLP port, ASTM TCP port, HTTP API of a real `lab serve`)
with `LAB_FUZZ_EXAMPLES` examples per property instead of the suite's few: no crash, an answer
for each (HL7 AE/AR, ASTM NAK, HTTP 4xx), the server healthy and its log free of tracebacks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from drills.common import DrillResult

ROOT = Path(__file__).resolve().parent.parent


def run(folder: Path, *, examples: int = 2000) -> DrillResult:
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, LAB_FUZZ_EXAMPLES=str(examples))
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603 - our own interpreter and test file
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(folder / "pytest"),
            str(ROOT / "tests" / "test_hostile_input.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    last = (done.stdout.strip().splitlines() or [""])[-1]
    (folder / "pytest.log").write_text(done.stdout + done.stderr)
    summary = (
        f"{examples} examples per property on MLLP, ASTM and HTTP: {last} "
        f"({time.monotonic() - started:.0f} s)"
    )
    if done.returncode:
        summary += f"; see {folder / 'pytest.log'}"
    return DrillResult(name="hostile-input", ok=done.returncode == 0, summary=summary)
