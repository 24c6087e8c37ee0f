"""`python -m drills [NAME ...]`: run the fault drills, one summary line each.

Names: kill, postgres, receiver-down, serial-noise, hostile-input, failover, node-loss
(default: all, in that order). Exit status 1 when any drill fails. Work files go to a temporary
folder (kept, and named, when a drill fails). After each drill its `lab serve` logs are scanned
for national numbers and patient names; any found fails the drill.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from drills import (
    failover,
    hostile_input,
    kill_lab,
    node_loss,
    postgres_restart,
    receiver_down,
    serial_noise,
)
from drills.common import DrillResult, patient_data_in_logs

DRILLS: dict[str, Callable[[Path], DrillResult]] = {
    "kill": kill_lab.run,
    "postgres": postgres_restart.run,
    "receiver-down": receiver_down.run,
    "serial-noise": serial_noise.run,
    "hostile-input": hostile_input.run,
    "failover": failover.run,
    "node-loss": node_loss.run,
}


def main(argv: list[str]) -> int:
    wanted = argv or list(DRILLS)
    unknown = [name for name in wanted if name not in DRILLS]
    if unknown:
        print(f"unknown drill {', '.join(unknown)}; known: {', '.join(DRILLS)}")
        return 2
    root = Path(tempfile.mkdtemp(prefix="lab-drills-"))
    failed = 0
    for name in wanted:
        started = time.monotonic()
        try:
            result = DRILLS[name](root / name)
        except Exception as error:
            traceback.print_exc()
            result = DrillResult(name=name, ok=False, summary=f"crashed: {error!r}")
        # Every drill's `lab serve` log is scanned: a drill that leaks patient data fails.
        leaks = patient_data_in_logs(root / name) if (root / name).exists() else []
        if leaks:
            result = DrillResult(
                name=name, ok=False, summary=f"{result.summary}; LOGS: {'; '.join(leaks)}"
            )
        failed += not result.ok
        mark = "PASS" if result.ok else "FAIL"
        print(f"{mark} {name} ({time.monotonic() - started:.0f} s): {result.summary}", flush=True)
    if failed:
        print(f"{failed} drill(s) failed; work files in {root}")
        return 1
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
