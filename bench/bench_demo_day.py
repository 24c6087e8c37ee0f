"""The demo day's autoverification rate: `lab demo run --exit` on an empty database of its own.

The demo day (lab/demo_day.py) seeds the demo catalog, users, analysers and the demo rule sets
(active, as `make run` does), places orders over MLLP, receives the tubes and lets the virtual
analysers send their results. Printed: how many results demo rule set v1 released without a
person and how many it held for review, and the rate. The values are the simulator's normal
ones, so a high rate is expected; the holds are the critical and flagged values it sends.
`BENCH_SCALE` scales the number of patients (40 at scale 1, at least 6).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

from bench import SERVER, scaled
from lab.db import to_psycopg_url
from testkit.database import create_database, drop_database
from testkit.process import free_port

_SUMMARY = re.compile(r"rules: (\d+) results released by autoverification v1, (\d+) wait")


def main() -> None:
    patients = scaled(40, 6)
    database = create_database(SERVER, "demo_day", migrate=False)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-demo-day-") as data_dir:
            env = {
                **os.environ,
                "LAB_DATABASE_URL": to_psycopg_url(database.url),
                "LAB_DATA_DIR": data_dir,
                "LAB_DEMO_PASSWORD": "bench-demo-day-password",
                "LAB_MLLP_PORT": str(free_port()),
                "LAB_DEMO_ASTM_PORT": str(free_port()),
            }
            day = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "lab.cli",
                    "demo",
                    "run",
                    "--patients",
                    str(patients),
                    "--exit",
                    "--http-port",
                    str(free_port()),
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
    finally:
        drop_database(database)
    found = _SUMMARY.search(day.stdout)
    if day.returncode != 0 or found is None:
        print(f"the demo day failed (exit {day.returncode}):\n{day.stderr[-2000:]}")
        return
    released, held = int(found[1]), int(found[2])
    total = released + held
    print(
        f"demo day, {patients} patients: {released} of {total} results released by "
        f"autoverification v1 = {released / total:.0%}; {held} held for a person"
    )
