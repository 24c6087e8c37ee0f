"""The dispatcher: the only outbound HL7 socket code. Delivers the outbox to the record.

One round (`run_once`):
1. claim: in one short transaction, up to `batch_size` due messages are locked with
   `FOR UPDATE SKIP LOCKED` (a second process running the dispatcher skips them) and marked
   `sent`. Only a patient's oldest undelivered message is due: a later one waits while an
   earlier one is queued, in flight, failing or dead (per-patient order,
   docs/architecture.md rule 4).
   A dead message holds back only its own patient's later messages, never other patients'.
2. deliver each over one MLLP connection (`MllpClient`), waiting for the whole ACK;
3. record: AA marks it `acknowledged`; AE, a wrong or missing ACK, a timeout or a dropped
   connection mark it `failed` with the next try after an exponential backoff; AR, or
   `max_attempts` failures, park it as `dead` for an operator to resend. Accepted deliveries
   are written together, by one statement and one commit for up to `record_every` messages
   or `record_after` seconds of deliveries (and at the end of the round), not one transaction
   per message: a commit per message was most of the dispatcher's cost. A process that dies
   between a delivery and its record leaves the message `sent`, so it goes again (at least
   once, as below): at most that many messages. A failure is written at once, so a dead
   process never holds a failing message back for longer than its backoff would.

A message left `sent` by a process that died is claimed again after `stale_after` seconds.
Delivery is at least once: a retry keeps the message's MSH-10, so the record can tell a repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text, update
from sqlalchemy.orm import Session, sessionmaker

from lab.hl7.codec.ack import AckCode
from lab.hl7.codec.er7 import parse_message
from lab.hl7.codec.errors import Hl7Error
from lab.hl7.codec.mllp import MllpDecoder, frame
from lab.tables import HL7_UNDELIVERED, HL7_WAITING, Hl7Message, Hl7Status, sql_list
from lab.timeutil import utcnow

log = logging.getLogger(__name__)
SENT, ACKNOWLEDGED, FAILED, DEAD = (
    Hl7Status.SENT,
    Hl7Status.ACKNOWLEDGED,
    Hl7Status.FAILED,
    Hl7Status.DEAD,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryPolicy:
    connect_timeout: float = 10.0
    ack_timeout: float = 30.0
    max_attempts: int = 10
    backoff_base: float = 2.0
    """Seconds before the second try; doubled for each further failure."""
    backoff_max: float = 900.0
    batch_size: int = 200
    stale_after: float = 300.0
    record_every: int = 50
    """Outcomes written by one statement at most this many at a time ..."""
    record_after: float = 1.0
    """... and at least this often (seconds) while a round delivers."""

    def backoff(self, attempts: int) -> timedelta:
        seconds = min(self.backoff_base * 2 ** max(attempts - 1, 0), self.backoff_max)
        return timedelta(seconds=seconds)


class DeliveryFailed(Exception):
    """This try did not end in an accepting ACK; `final` when retrying cannot help (AR)."""

    def __init__(self, reason: str, *, ack: str | None = None, final: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ack = ack
        self.final = final


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    host: str
    port: int
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        """`mllp://host:port` or `mllps://host:port` (MLLP over TLS)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mllp", "mllps") or not parts.hostname or not parts.port:
            raise ValueError(f"not an MLLP URL (mllp://host:port): {url!r}")
        return cls(host=parts.hostname, port=parts.port, tls=parts.scheme == "mllps")


class MllpClient:
    """One connection to the receiver, opened when needed and reused while it lasts."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        policy: DeliveryPolicy,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.policy = policy
        self.tls = (
            tls if tls is not None else (ssl.create_default_context() if endpoint.tls else None)
        )
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = MllpDecoder()

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), timeout=2)

    async def exchange(self, payload: bytes) -> bytes:
        """Send one message and return the ACK's bytes; DeliveryFailed on any fault.

        A connection reused from an earlier message may have been closed by the peer meanwhile
        (hl7apy's MLLPServer closes after every message): when that try fails, it is repeated
        once at once on a fresh connection.
        """
        reused = self._writer is not None
        try:
            return await self._exchange_once(payload)
        except DeliveryFailed:
            if not reused:
                raise
        return await self._exchange_once(payload)

    async def _exchange_once(self, payload: bytes) -> bytes:
        try:
            reader, writer = await self._connection()
            writer.write(frame(payload))
            await writer.drain()
            return await asyncio.wait_for(self._read_ack(reader), self.policy.ack_timeout)
        except TimeoutError:
            await self.close()
            raise DeliveryFailed("no ACK within the timeout") from None
        except (OSError, EOFError, Hl7Error) as exc:
            await self.close()
            raise DeliveryFailed(f"connection failed: {type(exc).__name__}: {exc}") from None

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is not None and self._writer is not None:
            return self._reader, self._writer
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                self.endpoint.host,
                self.endpoint.port,
                ssl=self.tls,
                server_hostname=self.endpoint.host if self.tls else None,
            ),
            timeout=self.policy.connect_timeout,
        )
        self._reader, self._writer = reader, writer
        self._decoder = MllpDecoder()
        return reader, writer

    async def _read_ack(self, reader: asyncio.StreamReader) -> bytes:
        # Read until one whole block has arrived: an ACK may come split over many reads.
        while True:
            message = self._decoder.next_message()
            if isinstance(message, bytes):
                return message
            chunk = await reader.read(65536)
            if not chunk:
                raise EOFError("the receiver closed the connection before the ACK")
            self._decoder.receive_data(chunk)


def judge_ack(raw: bytes, control_id: str) -> tuple[str, str]:
    """(ACK code, ACK text) when the ACK accepts `control_id`; DeliveryFailed otherwise."""
    try:
        ack = parse_message(raw)
    except Hl7Error as exc:
        raise DeliveryFailed(f"unreadable ACK: {exc}") from None
    ack_text = ack.to_er7()
    msa = ack.segment("MSA")
    if msa is None:
        raise DeliveryFailed("ACK without MSA", ack=ack_text)
    code, echoed = msa.text(1), msa.text(2)
    if echoed != control_id:
        raise DeliveryFailed(f"ACK for {echoed!r}, not for {control_id!r}", ack=ack_text)
    if code in (AckCode.APPLICATION_ACCEPT.value, AckCode.COMMIT_ACCEPT.value):
        return code, ack_text
    final = code in (AckCode.APPLICATION_REJECT.value, AckCode.COMMIT_REJECT.value)
    err = ack.segment("ERR")
    detail = f": {err.text(8) or err.component(3, 2)}" if err is not None else ""
    raise DeliveryFailed(
        f"receiver answered {code or 'no code'}{detail}", ack=ack_text, final=final
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Claimed:
    id: int
    control_id: str
    raw: bytes
    attempts: int


# Only a patient's oldest undelivered message is due (per-patient order): DISTINCT ON finds each
# patient's head over the partial index `ix_hl7_message_outbox`; `sent` heads older than the
# stale limit belong to a process that died and are taken again.
_HEADS = text(
    f"""
    SELECT id FROM (
      SELECT DISTINCT ON (patient_id) id, status, next_attempt_at, last_attempt_at
      FROM hl7_message
      WHERE direction = 'out' AND status IN ({sql_list(HL7_UNDELIVERED)})
      ORDER BY patient_id, id
    ) AS heads
    WHERE (status IN ({sql_list(HL7_WAITING)}) AND next_attempt_at <= :now)
       OR (status = '{Hl7Status.SENT.value}' AND last_attempt_at < :stale)
    ORDER BY id
    LIMIT :limit
    """  # noqa: S608 (the lists are our own constants, written in for the partial index)
)
# The heads found are locked with SKIP LOCKED (another dispatcher may hold some) and checked
# again: one claimed meanwhile by another process is no longer due.
_LOCK = text(
    f"""
    SELECT id FROM hl7_message
    WHERE id = ANY(:ids)
      AND ((status IN ({sql_list(HL7_WAITING)}) AND next_attempt_at <= :now)
           OR (status = '{Hl7Status.SENT.value}' AND last_attempt_at < :stale))
    ORDER BY id
    FOR UPDATE SKIP LOCKED
    """  # noqa: S608
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How one try ended: accepted (`code`, `ack`), or `failure`."""

    claimed: Claimed
    at: datetime
    code: str | None = None
    ack: str | None = None
    failure: DeliveryFailed | None = None


# The outcomes of several tries in one statement: each row's new status and ACK, its error and
# next try (kept when NULL: an accepted message keeps its last next_attempt_at), written only
# while the row is still `sent` by this claim.
_RECORD = text(
    """
    UPDATE hl7_message AS m
    SET status = x.status, ack = x.ack, ack_code = x.ack_code, error = x.error,
        next_attempt_at = coalesce(x.next_attempt_at, m.next_attempt_at),
        finished_at = x.finished_at
    FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]), CAST(:acks AS text[]),
                CAST(:codes AS text[]), CAST(:errors AS text[]),
                CAST(:next_attempts AS timestamptz[]), CAST(:finished AS timestamptz[]))
         AS x(id, status, ack, ack_code, error, next_attempt_at, finished_at)
    WHERE m.id = x.id AND m.status = :sent
    """
)


@dataclass(slots=True)
class DispatchStats:
    delivered: int = 0
    failures: int = 0
    dead: int = 0
    last_delivery_at: datetime | None = None
    last_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Dispatcher:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        client: MllpClient,
        *,
        policy: DeliveryPolicy | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.client = client
        self.policy = policy or client.policy
        self.stats = DispatchStats()
        self.partner = f"mllp://{client.endpoint.host}:{client.endpoint.port}"

    def claim(self, now: datetime) -> list[Claimed]:
        stale = now - timedelta(seconds=self.policy.stale_after)
        with self.session_factory() as session:
            heads = list(
                session.scalars(
                    _HEADS, {"now": now, "stale": stale, "limit": self.policy.batch_size}
                )
            )
            ids = (
                list(session.scalars(_LOCK, {"ids": heads, "now": now, "stale": stale}))
                if heads
                else []
            )
            if not ids:
                session.commit()
                return []
            rows = session.execute(
                update(Hl7Message)
                .where(Hl7Message.id.in_(ids))
                .values(
                    status=SENT,
                    attempts=Hl7Message.attempts + 1,
                    last_attempt_at=now,
                    partner=self.partner,
                )
                .returning(
                    Hl7Message.id, Hl7Message.control_id, Hl7Message.raw, Hl7Message.attempts
                )
            ).all()
            session.commit()
        claimed = [Claimed(id=r[0], control_id=r[1], raw=r[2], attempts=r[3]) for r in rows]
        return sorted(claimed, key=lambda c: c.id)

    def record(
        self,
        claimed: Claimed,
        *,
        now: datetime,
        code: str | None = None,
        ack: str | None = None,
        failure: DeliveryFailed | None = None,
    ) -> str:
        """Store how the try ended; returns the new status."""
        outcome = Outcome(claimed=claimed, at=now, code=code, ack=ack, failure=failure)
        (status,) = self.record_all([outcome])
        return status

    def status_after(self, outcome: Outcome) -> str:
        """The status a try leaves its message in."""
        if outcome.failure is None:
            return ACKNOWLEDGED
        dead = outcome.failure.final or outcome.claimed.attempts >= self.policy.max_attempts
        return DEAD if dead else FAILED

    def record_all(self, outcomes: list[Outcome]) -> list[str]:
        """Store how each try ended, in one statement and one commit; the new statuses."""
        statuses = [self.status_after(outcome) for outcome in outcomes]
        rows: dict[str, list[Any]] = {
            "ids": [],
            "statuses": statuses,
            "acks": [],
            "codes": [],
            "errors": [],
            "next_attempts": [],
            "finished": [],
        }
        for outcome, status in zip(outcomes, statuses, strict=True):
            failure = outcome.failure
            rows["ids"].append(outcome.claimed.id)
            rows["acks"].append(outcome.ack)
            if failure is None:
                rows["codes"].append(outcome.code)
                rows["errors"].append("")
                rows["next_attempts"].append(None)
                rows["finished"].append(outcome.at)
            else:
                rows["codes"].append(_ack_code(failure.ack))
                rows["errors"].append(failure.reason[:2000])
                rows["next_attempts"].append(
                    outcome.at + self.policy.backoff(outcome.claimed.attempts)
                )
                rows["finished"].append(outcome.at if status == DEAD else None)
        with self.session_factory() as session:
            session.execute(_RECORD, {**rows, "sent": SENT.value})
            session.commit()
        return [str(status) for status in statuses]

    async def run_once(self, now: datetime | None = None) -> int:
        """Claim and deliver one batch; returns how many messages were tried."""
        claimed = await asyncio.to_thread(self.claim, now or utcnow())
        loop = asyncio.get_running_loop()
        done: list[Outcome] = []
        since = loop.time()
        for message in claimed:
            if done and (
                len(done) >= self.policy.record_every
                or loop.time() - since >= self.policy.record_after
            ):
                await asyncio.to_thread(self.record_all, done)
                done = []
            if not done:
                since = loop.time()
            try:
                answer = await self.client.exchange(message.raw)
                code, ack = judge_ack(answer, message.control_id)
            except DeliveryFailed as failure:
                outcome = Outcome(claimed=message, at=utcnow(), ack=failure.ack, failure=failure)
                done.append(outcome)
                self.stats.failures += 1
                self.stats.last_error = failure.reason
                if self.status_after(outcome) == DEAD:
                    self.stats.dead += 1
                    log.warning("hl7 outbox: %s parked dead: %s", message.control_id, failure)
                else:
                    log.info("hl7 outbox: %s failed: %s", message.control_id, failure)
                # A failure is written at once (with the deliveries before it): were this
                # process to die, the message would otherwise wait `stale_after` seconds as
                # `sent` instead of its backoff. A delivery not yet written goes again at worst.
                await asyncio.to_thread(self.record_all, done)
                done = []
                continue
            done.append(Outcome(claimed=message, at=utcnow(), code=code, ack=ack))
            self.stats.delivered += 1
            self.stats.last_delivery_at = utcnow()
        if done:
            await asyncio.to_thread(self.record_all, done)
        return len(claimed)

    async def drain(self, *, budget: float = 30.0) -> int:
        """Rounds until nothing is due (or `budget` seconds passed); one scheduler tick."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        total = 0
        while loop.time() - started < budget:
            delivered_before = self.stats.delivered
            tried = await self.run_once()
            total += tried
            # Go on while messages get through: each delivery may make a patient's next due.
            if not tried or self.stats.delivered == delivered_before:
                break
        return total

    async def close(self) -> None:
        await self.client.close()


def _ack_code(ack: str | None) -> str | None:
    if not ack:
        return None
    for segment in ack.split("\r"):
        if segment.startswith("MSA"):
            return segment[4:6] or None
    return None
