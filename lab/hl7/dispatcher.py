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

Who holds a claim: each dispatcher is a `Claimant` with a number of its own, taken from a
sequence and held as a session-level advisory lock on a database connection of its own for as
long as the dispatcher runs. A claimed message carries that number (`claimed_by`). PostgreSQL
lets go of a session's advisory locks when the session ends, whatever ended it: the process
exited or was killed (its socket closes), the connection was terminated, the server restarted.
So a `sent` message whose number no session holds (`pg_locks`) belongs to a dispatcher that is
gone, and any dispatcher claims it again at its next round, within about a second of the loss.
`stale_after` stays as the last resort, for the rows claimed before the numbers existed and for
a claimant whose session outlives it (a vanished machine, until TCP keepalive, about 25 s).

Delivery is at least once: a message taken over from a dispatcher that is gone may already have
reached the record (sent, ACK not yet written), and goes again with the same MSH-10, so the
record can tell a repeat (HL7 v2.5.1 original acknowledgment mode; docs/hl7-interface.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, TextClause, text, update
from sqlalchemy.exc import DBAPIError
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
    claimant: int | None = None
    """The claim number it was claimed under; its outcome is written only while it still is."""


#: The first key of every claimant's advisory lock, `pg_advisory_lock(CLAIM_LOCKS, number)`.
#: The two-key form is a space of its own in `pg_locks` (objsubid 2), apart from the one-key
#: locks of the audit sealer and the rule sets.
CLAIM_LOCKS = 0x1AB_0B07
# The claim numbers whose session lives: the holders of claimant locks in this database. An
# InitPlan, so PostgreSQL reads pg_locks only when a `sent` row asks, and once per statement.
_LIVE_CLAIMANTS = f"""ARRAY(
      SELECT objid::bigint FROM pg_locks
      WHERE locktype = 'advisory' AND classid = {CLAIM_LOCKS} AND objsubid = 2 AND granted
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    )"""  # noqa: S608
# Due: waiting and its time has come; or `sent` by a claimant that is gone (no session holds
# its number), by this one in an earlier round that could not write its outcomes, or so long
# ago that its claimant cannot be asked (claimed before the numbers; the last resort).
_DUE = f"""((status IN ({sql_list(HL7_WAITING)}) AND next_attempt_at <= :now)
         OR (status = '{Hl7Status.SENT.value}'
             AND (last_attempt_at < :stale OR claimed_by = :me
                  OR claimed_by <> ALL({_LIVE_CLAIMANTS}))))"""
# Only a patient's oldest undelivered message is due (per-patient order): DISTINCT ON finds each
# patient's head over the partial index `ix_hl7_message_outbox`.
_HEADS = text(
    f"""
    SELECT id FROM (
      SELECT DISTINCT ON (patient_id) id, status, next_attempt_at, last_attempt_at, claimed_by
      FROM hl7_message
      WHERE direction = 'out' AND status IN ({sql_list(HL7_UNDELIVERED)})
      ORDER BY patient_id, id
    ) AS heads
    WHERE {_DUE}
    ORDER BY id
    LIMIT :limit
    """  # noqa: S608 (the lists are our own constants, written in for the partial index)
)
# The heads found are locked with SKIP LOCKED (another dispatcher may hold some) and checked
# again: one claimed meanwhile by another process is no longer due.
_LOCK = text(
    f"""
    SELECT id FROM hl7_message
    WHERE id = ANY(:ids) AND {_DUE}
    ORDER BY id
    FOR UPDATE SKIP LOCKED
    """  # noqa: S608
)
# A new claim number, locked by this session until it ends; the session is named for
# pg_stat_activity, never closed for idleness, and (over TCP) probed by the server's keepalive
# so that the session of a machine that vanished ends, and its lock with it, within ~25 s.
_TAKE_NUMBER = text(
    f"""
    SELECT number, pg_try_advisory_lock({CLAIM_LOCKS}, number) AS locked,
           set_config('application_name', :name, false),
           set_config('idle_session_timeout', '0', false),
           set_config('tcp_keepalives_idle', '10', false),
           set_config('tcp_keepalives_interval', '5', false),
           set_config('tcp_keepalives_count', '3', false)
    FROM (SELECT nextval('hl7_claimant_seq')::integer AS number) AS taken
    """  # noqa: S608
)


class Claimant:
    """Who claims: a claim number held by an advisory lock on a database session of its own.

    The session is opened at the first claim and kept (out of the pool) until `close`; each
    round's search for due messages runs on it, so a round finds out that the session was lost
    (a server restart, a terminated connection) before it claims anything, and takes a new
    number on a new session. Messages claimed under the old number are then another gone
    claimant's, and are taken again like them.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.number: int | None = None
        self._connection: Connection | None = None
        self._guard = threading.Lock()

    def search(self, statement: TextClause, params: dict[str, Any]) -> tuple[int, list[int]]:
        """(this claimant's number, the ids `statement` finds), with `:me` bound to the number."""
        with self._guard:
            for fresh in (False, True):
                connection, number = self._session()
                try:
                    found = connection.scalars(statement, {**params, "me": number})
                    return number, list(found)
                except DBAPIError as error:
                    self._drop()
                    if fresh or not error.connection_invalidated:
                        raise
                    log.warning("hl7 outbox: claimant session %s lost, taking a new one", number)
            raise AssertionError("unreachable")

    def close(self) -> None:
        """End the session: its lock goes with it (what a crash does too)."""
        with self._guard:
            self._drop()

    def _session(self) -> tuple[Connection, int]:
        if self._connection is not None and self.number is not None:
            return self._connection, self.number
        connection = self.engine.connect()
        try:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.detach()  # its own session for as long as it lives, not the pool's
            name = f"lab hl7 dispatcher {socket.gethostname()} pid {os.getpid()}"[:63]
            while True:  # a number still held after the sequence wrapped is skipped
                number, locked = connection.execute(_TAKE_NUMBER, {"name": name}).one()[:2]
                if locked:
                    break
        except BaseException:
            connection.close()
            raise
        self._connection, self.number = connection, int(number)
        log.info("hl7 outbox: dispatching as claimant %s", number)
        return connection, int(number)

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


def _engine_of(factory: sessionmaker[Session]) -> Engine:
    bind = factory.kw.get("bind")
    if not isinstance(bind, Engine):
        raise TypeError("the dispatcher needs a session factory bound to an Engine")
    return bind


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
# while the row is still `sent` by this claim (another dispatcher may have taken it over from a
# claimant it found gone); the claim number goes with the claim.
_RECORD = text(
    """
    UPDATE hl7_message AS m
    SET status = x.status, ack = x.ack, ack_code = x.ack_code, error = x.error,
        next_attempt_at = coalesce(x.next_attempt_at, m.next_attempt_at),
        finished_at = x.finished_at, claimed_by = NULL
    FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]), CAST(:acks AS text[]),
                CAST(:codes AS text[]), CAST(:errors AS text[]),
                CAST(:next_attempts AS timestamptz[]), CAST(:finished AS timestamptz[]),
                CAST(:claimants AS integer[]))
         AS x(id, status, ack, ack_code, error, next_attempt_at, finished_at, claimed_by)
    WHERE m.id = x.id AND m.status = :sent AND m.claimed_by IS NOT DISTINCT FROM x.claimed_by
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
        claimant: Claimant | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.client = client
        self.policy = policy or client.policy
        self.claimant = claimant or Claimant(_engine_of(session_factory))
        self.stats = DispatchStats()
        self.partner = f"mllp://{client.endpoint.host}:{client.endpoint.port}"
        # One round at a time: a round takes again what this claimant left `sent` (above).
        self._round = asyncio.Lock()

    def claim(self, now: datetime) -> list[Claimed]:
        stale = now - timedelta(seconds=self.policy.stale_after)
        # The heads are found on the claimant's own session, which proves it (and its lock)
        # alive before anything is claimed under its number.
        me, heads = self.claimant.search(
            _HEADS, {"now": now, "stale": stale, "limit": self.policy.batch_size}
        )
        if not heads:
            return []
        with self.session_factory() as session:
            ids = list(session.scalars(_LOCK, {"ids": heads, "now": now, "stale": stale, "me": me}))
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
                    claimed_by=me,
                )
                .returning(
                    Hl7Message.id, Hl7Message.control_id, Hl7Message.raw, Hl7Message.attempts
                )
            ).all()
            session.commit()
        claimed = [
            Claimed(id=r[0], control_id=r[1], raw=r[2], attempts=r[3], claimant=me) for r in rows
        ]
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
            "claimants": [],
        }
        for outcome, status in zip(outcomes, statuses, strict=True):
            failure = outcome.failure
            rows["ids"].append(outcome.claimed.id)
            rows["claimants"].append(outcome.claimed.claimant)
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
        async with self._round:
            return await self._round_of(now)

    async def _round_of(self, now: datetime | None) -> int:
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
        await asyncio.to_thread(self.claimant.close)


def _ack_code(ack: str | None) -> str | None:
    if not ack:
        return None
    for segment in ack.split("\r"):
        if segment.startswith("MSA"):
            return segment[4:6] or None
    return None
