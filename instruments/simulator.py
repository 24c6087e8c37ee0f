"""A virtual analyser: plays an analyser of a given profile over TCP or a serial line.

For each specimen it asks the host for the orders (host query), "runs" the tests it is given
and sends plausible results: values drawn inside the catalog's reference interval, and now and
then outside it, in the catalog's unit. With `noise` it damages the line the way real lines are
damaged: bytes inside frames are corrupted (the host NAKs, we send again), ACKs from the host
are lost (we send the frame again, the host drops the repeat) and writes are split.

It uses the same link layer as the host (`Connection` in the instrument role) and the same
`LineDriver`, so it only decides what to say. Tests, `lab instrument simulate`, the demo and
the benchmark use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from instruments.astm.constants import ACK, LF, STX
from instruments.astm.events import Event, MessageReceived, MessageSent, TransferAborted
from instruments.astm.link import Connection, Role, State
from instruments.astm.record_codec import build_records, parse_records
from instruments.astm.records import OrderRecord, Record, TerminatorRecord
from instruments.profiles import MeasuredResult, Profile, SpecimenOrder
from instruments.transports.base import ByteChannel, LineDriver

DEMO_CATALOG = Path(__file__).resolve().parent.parent / "lab" / "catalog" / "demo_catalog.toml"


@dataclass(frozen=True, slots=True, kw_only=True)
class TestRange:
    """What the analyser knows of a test: where values usually fall, and the unit to send."""

    __test__ = False  # not a pytest class
    low: Decimal | None
    high: Decimal | None
    unit: str
    decimals: int = 1


def ranges_from_catalog_file(path: Path = DEMO_CATALOG) -> dict[str, TestRange]:
    """Ranges of a catalog TOML file (the format of lab/catalog/demo_catalog.toml)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return ranges_from_catalog(data.get("test", []), intervals_key="reference")


def ranges_from_catalog(
    tests: Sequence[Mapping[str, Any]], *, intervals_key: str = "reference_intervals"
) -> dict[str, TestRange]:
    """Ranges from catalog entries (TOML tables or the JSON of GET /api/v1/catalog/tests)."""
    ranges: dict[str, TestRange] = {}
    for test in tests:
        if test.get("result_type", "numeric") != "numeric":
            continue
        intervals = test.get(intervals_key) or [{}]
        first = intervals[0]
        low, high = first.get("low"), first.get("high")
        ranges[str(test["code"])] = TestRange(
            low=Decimal(str(low)) if low is not None else None,
            high=Decimal(str(high)) if high is not None else None,
            unit=str(test.get("unit") or ""),
            decimals=int(test.get("decimals", 1)),
        )
    return ranges


@dataclass(slots=True, kw_only=True)
class SpecimenRun:
    """What happened to one specimen."""

    accession_number: str
    ordered: tuple[str, ...] = ()  # the tests the host asked for (analyser codes)
    sent: list[MeasuredResult] = field(default_factory=list)
    outcome: str = "pending"  # accepted | no order | not accepted | no answer


class NoisyChannel:
    """A `ByteChannel` that damages the line: corrupts frame bytes, loses ACKs, splits writes."""

    def __init__(
        self,
        inner: ByteChannel,
        *,
        rate: float,
        rng: random.Random,
        sending: Callable[[], bool],
    ) -> None:
        self.inner = inner
        self.rate = rate
        self.rng = rng
        self.sending = sending
        self.corrupted = 0
        self.acks_lost = 0

    @property
    def peer(self) -> str:
        return self.inner.peer

    async def read(self) -> bytes:
        data = await self.inner.read()
        if data and self.sending() and ACK in data and self.rng.random() < self.rate * 5:
            # A lost ACK: we see some other character and send the frame again (LIS1-A 6.3.5);
            # the host takes the repeat for what it is (same frame number) and drops it.
            self.acks_lost += 1
            data = data.replace(bytes([ACK]), b"?", 1)
        return data

    async def write(self, data: bytes) -> None:
        data = self._corrupt(data)
        if len(data) > 2 and self.rng.random() < self.rate * 20:
            cuts = sorted(self.rng.sample(range(1, len(data)), min(3, len(data) - 1)))
            pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
            for piece in pieces:
                await self.inner.write(piece)
                await asyncio.sleep(0.001)
            return
        await self.inner.write(data)

    def _corrupt(self, data: bytes) -> bytes:
        """Damage bytes between STX and the frame's CR LF only: damage to ENQ, EOT or the frame
        boundaries costs a 15-30 s timeout rather than a NAK, which tests cannot wait for."""
        if not self.rate:
            return data
        out = bytearray(data)
        start = out.find(STX)
        while start >= 0:
            end = out.find(LF, start)
            if end < 0:
                break
            for index in range(start + 1, end - 1):
                if self.rng.random() < self.rate:
                    replacement = self.rng.choice(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ|^~!")
                    if replacement != out[index]:
                        out[index] = replacement
                        self.corrupted += 1
            start = out.find(STX, end)
        return bytes(out)

    async def close(self) -> None:
        await self.inner.close()


class VirtualAnalyser:
    """Plays an analyser of `profile` on one line."""

    def __init__(
        self,
        *,
        profile: Profile,
        name: str = "SIM-1",
        to_local: Callable[[str], str | None] = lambda code: code,
        ranges: Mapping[str, TestRange] | None = None,
        rng: random.Random | None = None,
        noise: float = 0.0,
        out_of_range_share: float = 0.2,
        encoding: str | None = None,
        answer_timeout: float = 20.0,
        attempts: int = 3,
        clock: Callable[[], datetime] | None = None,
        timezone: str = "Europe/Oslo",
    ) -> None:
        self.profile = profile
        # The analyser's wall clock (local time, no zone, as LIS2-A2 timestamps are): by
        # default the time in its zone (the demo analyser's), whatever the machine's zone.
        zone = ZoneInfo(timezone)
        self.clock = clock or (lambda: datetime.now(zone).replace(tzinfo=None))
        self.name = name
        self.to_local = to_local
        self.ranges = dict(ranges if ranges is not None else ranges_from_catalog_file())
        self.rng = rng or random.Random()
        self.noise = noise
        self.out_of_range_share = out_of_range_share
        self.encoding = encoding or profile.default_encoding
        self.answer_timeout = answer_timeout
        self.attempts = attempts
        self.driver: LineDriver | None = None
        self.noisy: NoisyChannel | None = None
        self._answers: asyncio.Queue[list[Record]] = asyncio.Queue()
        self._deliveries: dict[int, asyncio.Future[bool]] = {}
        self.line: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ the line

    @asynccontextmanager
    async def on_line(self, channel: ByteChannel) -> AsyncIterator[None]:
        """Hold `channel` as the analyser's line while the block runs."""
        connection = Connection(role=Role.INSTRUMENT)
        if self.noise:
            channel = self.noisy = NoisyChannel(
                channel,
                rate=self.noise,
                rng=self.rng,
                sending=lambda: connection.state is State.SENDING,
            )
        driver = self.driver = LineDriver(connection, channel, on_event=self._on_event)
        self.line = asyncio.create_task(driver.run())
        try:
            yield
        finally:
            driver.stop()
            await channel.close()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self.line, 5.0)
            self.driver = None

    async def run(
        self,
        channel: ByteChannel,
        accession_numbers: Sequence[str],
        *,
        query: bool = True,
        tests: Sequence[str] = (),
        control: bool = False,
    ) -> list[SpecimenRun]:
        """Run every specimen on `channel`; with `query` False, run `tests` without asking."""
        runs: list[SpecimenRun] = []
        async with self.on_line(channel):
            for accession in accession_numbers:
                run = SpecimenRun(accession_number=accession)
                runs.append(run)
                await self.run_specimen(run, query=query, tests=tests, control=control)
        return runs

    async def _on_event(self, driver: LineDriver, event: Event) -> None:
        if isinstance(event, MessageReceived):
            if event.needs_confirmation:
                driver.connection.confirm_received(time.monotonic())
            if event.complete:
                records = parse_records(event.records, encoding=self.encoding)
                self._answers.put_nowait(records)
        elif isinstance(event, MessageSent | TransferAborted) and event.message_number:
            future = self._deliveries.pop(event.message_number, None)
            if future is not None and not future.done():
                future.set_result(isinstance(event, MessageSent))

    async def send(self, records: Sequence[Record]) -> bool:
        """Send one message; True once the host acknowledged its last frame (it committed)."""
        driver = self.driver
        if driver is None:
            raise RuntimeError("the analyser is not on a line")
        raws = build_records(records, encoding=self.encoding, trim=True)
        for _ in range(self.attempts):
            future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            number = driver.connection.send_message(raws, time.monotonic())
            self._deliveries[number] = future
            await driver.process()
            line = self.line
            if line is not None:  # a line that drops ends the wait
                waiters: set[asyncio.Future[Any]] = {future, line}
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if not future.done():
                return False
            if future.result():
                return True
        return False

    # ------------------------------------------------------------------ one specimen

    async def run_specimen(
        self,
        run: SpecimenRun,
        *,
        query: bool = True,
        tests: Sequence[str] = (),
        control: bool = False,
    ) -> None:
        if self.line is None or self.line.done():
            run.outcome = "not accepted"  # the line is gone
            return
        now = self.clock().replace(microsecond=0)
        order = SpecimenOrder(accession_number=run.accession_number, test_codes=tuple(tests))
        if query:
            answer = await self.ask(run.accession_number)
            if answer is None:
                run.outcome = "no answer"
                return
            if not answer.test_codes:
                run.outcome = "no order"
                return
            order = answer
        run.ordered = order.test_codes
        run.sent = [self.measure(code, now) for code in order.test_codes]
        message = self.profile.results_message(
            order, run.sent, name=self.name, now=now, control=control
        )
        run.outcome = "accepted" if await self.send(message) else "not accepted"

    async def exchange(self, query: Sequence[Record]) -> list[Record] | None:
        """Send a query message and return the host's answer as records; None if no answer."""
        while not self._answers.empty():
            self._answers.get_nowait()  # a stale answer belongs to an earlier question
        if not await self.send(query):
            return None
        try:
            return await asyncio.wait_for(self._answers.get(), self.answer_timeout)
        except TimeoutError:
            return None

    async def ask(self, accession_number: str) -> SpecimenOrder | None:
        """Host query; the order found (no tests if the host has none), None if no answer."""
        now = self.clock().replace(microsecond=0)
        records = await self.exchange(
            self.profile.query_message(accession_number, name=self.name, now=now)
        )
        if records is None:
            return None
        codes: list[str] = []
        echo = None
        for record in records:
            if isinstance(record, OrderRecord) and record.specimen_id == accession_number:
                codes.extend(self.profile.order_tests(record))
                echo = record.instrument_specimen_id if record.text(4) else None
            if isinstance(record, TerminatorRecord) and record.termination_code == "I":
                return SpecimenOrder(accession_number=accession_number, test_codes=())
        return SpecimenOrder(
            accession_number=accession_number,
            test_codes=tuple(dict.fromkeys(codes)),
            instrument_specimen_id=echo,
        )

    def measure(self, code: str, now: datetime) -> MeasuredResult:
        """A plausible value: inside the reference interval mostly, outside now and then."""
        local = self.to_local(code) or code
        known = self.ranges.get(local)
        if known is None:
            return MeasuredResult(test_code=code, value="1", unit="", completed_at=now)
        low = known.low if known.low is not None else Decimal(0)
        high = known.high if known.high is not None else (low * 2 if low else Decimal(10))
        rng = self.rng
        if rng.random() < self.out_of_range_share:
            if rng.random() < 0.5 and low > 0:
                value = low * Decimal(str(rng.uniform(0.5, 0.97)))
            else:
                value = high * Decimal(str(rng.uniform(1.03, 1.6)))
        else:
            value = low + (high - low) * Decimal(str(rng.random()))
        quantum = Decimal(1).scaleb(-known.decimals)
        value = value.quantize(quantum, rounding=ROUND_HALF_UP)
        flag = "L" if value < low else "H" if value > high else "N"
        return MeasuredResult(
            test_code=code,
            value=str(value),
            unit=known.unit,
            flags=(flag,),
            completed_at=now,
            operator="sim",
        )
