"""`lab instrument list | replay | simulate`: look at, replay and play analysers."""

from __future__ import annotations

import argparse
import asyncio
import codecs
import json
import random
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from sqlalchemy.orm import Session, sessionmaker

from instruments.astm.events import Direction, FrameRejected, MessageReceived, TransferAborted
from instruments.astm.link import Connection
from instruments.astm.record_codec import build_record_text, looks_like_utf8
from instruments.astm.transcript import read_transcript, replay
from instruments.config import InstrumentConfig, SerialSettings, TcpSettings, load_instruments
from instruments.messages import decode_message, encoding_of, handle_raw_message
from instruments.profiles import PROFILES, get_profile
from instruments.simulator import VirtualAnalyser, ranges_from_catalog, ranges_from_catalog_file
from instruments.transports import serial as serial_transport
from instruments.transports import tcp
from lab.config import Settings
from lab.db import make_engine, make_session_factory, runtime_url, transaction


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    group = commands.add_parser(
        "instrument", help="analysers: list, replay captures, simulate", description=__doc__
    )
    sub = group.add_subparsers(dest="instrument_command", required=True, metavar="COMMAND")

    listing = sub.add_parser("list", help="the configured analysers")
    listing.set_defaults(run=cmd_list)

    again = sub.add_parser(
        "replay",
        help="feed a capture through the ASTM decoder (and with --record, into the database)",
        description="Feed the analyser's side of a transcript (tests/data/astm format, or an "
        "archive file from LAB_DATA_DIR/archive) through the same decoder as a live line. "
        "Without --record nothing is stored; the messages are printed.",
    )
    again.add_argument("file", type=Path)
    again.add_argument("--instrument", help="a configured analyser (its profile and test map)")
    again.add_argument("--profile", choices=sorted(PROFILES), default="generic")
    again.add_argument("--record", action="store_true", help="store through the runner's path")
    again.add_argument(
        "--encoding",
        help="the capture's character set (e.g. utf-8, latin-1, cp1252); by default the "
        "analyser's or profile's. A capture that is UTF-8 while that is a one-byte set is "
        "not stored unless this names the character set to read it in.",
    )
    again.set_defaults(run=cmd_replay)

    play = sub.add_parser(
        "simulate",
        help="play an analyser: query, run and send results",
        description="A virtual analyser of the given profile: for each specimen it sends a host "
        "query, runs the tests the host answers with and sends plausible results.",
    )
    play.add_argument("--profile", choices=sorted(PROFILES), default="generic")
    where = play.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", metavar="HOST:PORT", help="connect to the lab module")
    where.add_argument(
        "--listen", metavar="HOST:PORT", help="wait for the lab module (client mode)"
    )
    where.add_argument("--serial", metavar="DEVICE", help="a serial port or pyserial URL")
    play.add_argument("--baudrate", type=int, default=9600)
    play.add_argument("accession", nargs="*", help="accession numbers of the specimens to run")
    play.add_argument("--from-worklist", action="store_true", help="take specimens from the API")
    play.add_argument("--api", default="http://127.0.0.1:8000", help="the lab module's address")
    play.add_argument("--token", help="API token (lab token create USER)")
    play.add_argument("--instrument", default="demo", help="whose test map and worklist to use")
    play.add_argument("--name", default="SIM-1", help="the analyser's name in its H records")
    play.add_argument("--noise", type=float, default=0.0, help="line noise rate, e.g. 0.01")
    play.add_argument("--seed", type=int, help="random seed (repeatable runs)")
    play.set_defaults(run=cmd_simulate)


def _factory(settings: Settings) -> sessionmaker[Session]:
    return make_session_factory(make_engine(runtime_url(settings), pool_size=2))


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    for config in load_instruments(settings):
        mapped = "local codes" if config.local_codes else f"{len(config.tests)} tests mapped"
        print(
            f"{config.name}: profile {config.profile}, {config.transport.describe()}, {mapped}"
            + (", order download" if config.order_download else "")
        )
    return 0


@dataclass(slots=True)
class ReplaySummary:
    messages: int = 0
    recorded: int = 0
    repeated: int = 0
    unmatched: int = 0
    qc: int = 0
    queries: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what the link layer did not deliver


def replay_file(
    text: str,
    *,
    instrument: InstrumentConfig,
    session_factory: sessionmaker[Session] | None,
    out: TextIO = sys.stdout,
    encoding: str | None = None,
) -> ReplaySummary:
    """The analyser's side of a capture through a host `Connection`, as on a live line; each
    message through the runner's handling (`session_factory` given) or only decoded and shown.

    Every message of the capture is handled, host queries included. Our answer to a query is
    worked out (and counted) but not written into the replayed line: the capture already holds
    the analyser's side of the original answer (its ACKs), and answering again would put our
    link out of step with it, losing the messages after the first query. `encoding` names the
    capture's character set; without it, a capture that is valid UTF-8 while the analyser is
    read in a one-byte set is refused message by message rather than misread.
    """
    if encoding is not None:
        instrument = replace(instrument, encoding=encoding)
    profile = get_profile(instrument.profile)
    reading = encoding_of(instrument, profile)
    summary = ReplaySummary()

    def on_message(connection: Connection, message: MessageReceived, now: float) -> None:
        summary.messages += 1
        if encoding is None and looks_like_utf8(message.records, reading):
            problem = (
                f"message {summary.messages}: not read: it is UTF-8, but analyser "
                f"{instrument.name} (profile {profile.name}) is read as {reading}; replay with "
                f"--encoding utf-8, or --encoding {reading} to read it so anyway"
            )
            summary.problems.append(problem)
            print(problem, file=out)
            connection.confirm_received(now)
            return
        if session_factory is None:
            try:
                records = decode_message(message.records, instrument=instrument, profile=profile)
            except Exception as error:
                summary.problems.append(str(error))
                print(f"message {summary.messages}: cannot be read: {error}", file=out)
            else:
                print(f"message {summary.messages}:", file=out)
                for record in records:
                    print(f"  {build_record_text(record)}", file=out)
            connection.confirm_received(now)
            return
        try:
            with transaction(session_factory) as session:
                outcome = handle_raw_message(
                    session, instrument=instrument, profile=profile, raws=message.records
                )
        except Exception as error:
            summary.failed += 1
            print(f"message {summary.messages}: not stored: {error}", file=out)
            connection.reject_received(now)
            return
        summary.recorded += outcome.recorded
        summary.repeated += outcome.repeated
        summary.unmatched += outcome.unmatched
        summary.qc += outcome.qc
        summary.queries += outcome.queries
        answer = ""
        if outcome.reply:
            orders = sum(1 for record in outcome.reply if record.type_code == "O")
            answer = f" (answered with {orders} orders; not sent: the capture holds the answer)"
        print(
            f"message {summary.messages}: {outcome.recorded} recorded, {outcome.repeated} "
            f"repeated, {outcome.unmatched} unmatched, {outcome.qc} QC, "
            f"{outcome.queries} queries{answer}",
            file=out,
        )
        for note in outcome.notes:
            print(f"message {summary.messages}: {note}", file=out)
        connection.confirm_received(now)

    done = replay(read_transcript(text), on_message=on_message)
    for event in done.events:
        if isinstance(event, FrameRejected):
            summary.skipped.append(f"frame refused (NAK), as on the line: {event.reason}")
        elif isinstance(event, TransferAborted) and event.direction is Direction.RECEIVING:
            summary.skipped.append(
                f"incomplete message of {len(event.records)} records discarded: "
                f"{event.reason.value}"
            )
    for line in summary.skipped:
        print(f"skipped: {line}", file=out)
    return summary


def _instrument(settings: Settings, name: str | None, profile: str) -> InstrumentConfig:
    if name:
        for config in load_instruments(settings):
            if config.name == name:
                return config
        raise SystemExit(f"no analyser {name!r} is configured")
    return InstrumentConfig(
        name=f"replay-{profile}",
        profile=profile,
        transport=TcpSettings(mode="server", port=0),
        local_codes=True,
    )


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    instrument = _instrument(settings, args.instrument, args.profile)
    if args.encoding:
        try:
            codecs.lookup(args.encoding)
        except LookupError:
            raise SystemExit(f"unknown encoding {args.encoding!r}") from None
    text = args.file.read_text(encoding="ascii")
    factory = _factory(settings) if args.record else None
    summary = replay_file(
        text, instrument=instrument, session_factory=factory, encoding=args.encoding
    )
    print(
        f"{summary.messages} messages: {summary.recorded} results recorded, {summary.repeated} "
        f"repeated, {summary.unmatched} unmatched, {summary.qc} QC, {summary.queries} queries, "
        f"{summary.failed} not stored, {len(summary.problems)} not read, "
        f"{len(summary.skipped)} skipped"
    )
    return 1 if summary.failed or summary.problems else 0


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"give HOST:PORT, not {text!r}")
    return host, int(port)


def _api_get(base: str, path: str, token: str | None) -> object:
    request = urllib.request.Request(base.rstrip("/") + path)  # noqa: S310 - an http(s) URL we were given
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read().decode("utf-8"))


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    accessions = list(args.accession)
    ranges = ranges_from_catalog_file()
    if args.from_worklist:
        entries = _api_get(args.api, f"/api/v1/instruments/{args.instrument}/worklist", args.token)
        accessions += [str(e["accession_number"]) for e in entries]  # type: ignore[attr-defined]
        tests = _api_get(args.api, "/api/v1/catalog/tests", args.token)
        ranges = ranges_from_catalog(tests)  # type: ignore[arg-type]
    if not accessions:
        print("no specimens to run (give accession numbers or --from-worklist)")
        return 1
    to_local: Callable[[str], str | None] = lambda code: code  # noqa: E731
    try:
        config = next(c for c in load_instruments(settings) if c.name == args.instrument)
        to_local = config.local_code
    except (StopIteration, Exception):  # noqa: S110 - without a config the codes are local codes
        pass
    analyser = VirtualAnalyser(
        profile=get_profile(args.profile),
        name=args.name,
        to_local=to_local,
        ranges=ranges,
        rng=random.Random(args.seed),
        noise=args.noise,
    )

    async def play() -> int:
        if args.tcp:
            channel: object = await tcp.open_channel(*_address(args.tcp))
        elif args.serial:
            channel = await serial_transport.open_channel(
                SerialSettings(port=args.serial, baudrate=args.baudrate)
            )
        else:
            channel = await wait_for_host(*_address(args.listen))
        runs = await analyser.run(channel, accessions)  # type: ignore[arg-type]
        for run in runs:
            values = ", ".join(f"{r.test_code}={r.value} {r.unit}" for r in run.sent)
            print(f"{run.accession_number}: {run.outcome} {values}")
        return 0 if all(r.outcome in ("accepted", "no order") for r in runs) else 1

    return asyncio.run(play())


async def wait_for_host(host: str, port: int) -> tcp.TcpChannel:
    """Listen until the lab module (configured as a TCP client) connects; take that line."""
    return await tcp.accept_one(host, port)
