"""One inbound message, from raw bytes to the acknowledgements that answer it (no sockets).

One transaction per message where the acknowledgement rules allow, two where they do not
(docs/architecture.md, rules 3 and 7):

1. `store`: the raw bytes go into `hl7_message` (status `received`). MSH-10 with the sender
   (MSH-3/MSH-4) is unique there, so a repeat finds the first row: if that one was answered,
   its stored ACK is sent again, byte for byte, and nothing is processed again (v2.5.1 section
   2.9.2; docs/hl7-interface.md, duplicates). When no commit ACK is due (original mode, or
   enhanced mode without MSH-15), the message is processed in the same transaction, without a
   savepoint, and the status and the ACK text are written before the one commit; a refusal
   rolls the whole transaction back and stores the raw message again with its AE/AR in one
   INSERT. If the database fails, nothing is committed and nothing answered: the sender
   resends.
2. In enhanced mode with a commit ACK (MSH-15), the raw message must be committed on its own
   before the CA goes out; `process` then locks the row, applies the message in a savepoint
   and sets the status and the application ACK in a second transaction. Only after that commit
   is the application ACK sent.

A message too broken to read (no MSH, bad delimiters, an unknown character set) is stored as
`rejected` with an AR built from whatever of MSH could be read.

A message naming a sender (MSH-3/MSH-4) that the caller's client certificate may not use
(`lab.hl7.senders`) is stored as `rejected` with an AR on MSH-3 and never processed; it is kept
without its control ID as the duplicate key, so a forgery can neither be mistaken for nor
replay the answer of the real sender's message with the same MSH-10.

Database failures are not answered at all: the row stays `received` (or was never written),
the listener drops the connection without an ACK, and the sender's resend is processed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, select, text
from sqlalchemy.exc import DataError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from lab import facts
from lab.db import driver_sql
from lab.hl7.codec.ack import (
    AckCode,
    OrderLine,
    Outcome,
    build_ack,
    outcome_of,
    requested_acknowledgements,
    response_type,
)
from lab.hl7.codec.charsets import encode_message_text
from lab.hl7.codec.er7 import Message, build_message, parse_message, parse_text
from lab.hl7.codec.errors import ErrorCode, Hl7Error, MessageStructureError, Problem, Severity
from lab.hl7.codec.inbound import ORDER_MESSAGES, map_inbound
from lab.hl7.codec.timestamps import format_timestamp
from lab.hl7.handlers import MessageRefused, handle, interface_actor
from lab.hl7.limits import control_id_problem
from lab.hl7.logsafe import describe_failure
from lab.hl7.responses import order_lines
from lab.hl7.senders import Caller
from lab.tables import HL7_LIFECYCLE, INBOUND, Hl7Message, Hl7Status
from lab.timeutil import utcnow

log = logging.getLogger(__name__)

RECEIVED, PROCESSED = Hl7Status.RECEIVED, Hl7Status.PROCESSED
ERROR, REJECTED = Hl7Status.ERROR, Hl7Status.REJECTED
_STATUS = {Outcome.ACCEPTED: PROCESSED, Outcome.ERROR: ERROR, Outcome.REJECTED: REJECTED}

# The statements of the log built once (the values go as parameters), so SQLAlchemy compiles
# each once rather than for every message.
_LOG: Table = Hl7Message.__table__  # type: ignore[assignment]


@lru_cache(maxsize=8)
def _insert_statement(columns: tuple[str, ...], keyed: bool, stamped: bool) -> str:
    """INSERT of a log row with these columns, returning its id. `keyed`: a message with a
    control ID is stored once per sender, and a repeat inserts nothing (no id). `stamped`:
    the same statement reads the transaction's stamp of rarely changing facts (`lab.facts`),
    which processing the message asks for next: one round trip instead of two."""
    names = ", ".join(_LOG.c[name].name for name in columns)  # the table's own names
    sql = f"INSERT INTO hl7_message ({names}) VALUES ({', '.join(':' + c for c in columns)})"  # noqa: S608
    if keyed:
        # Literal SQL: bound parameters in the index predicate would stop PostgreSQL from
        # matching the partial unique index once psycopg prepares the statement server-side.
        sql += (
            " ON CONFLICT (sending_application, sending_facility, control_id)"
            " WHERE direction = 'in' AND control_id <> '' DO NOTHING"
        )
    sql += " RETURNING id"
    if stamped:
        sql = (
            f"WITH stored AS ({sql}) SELECT (SELECT id FROM stored) AS id, "  # noqa: S608
            f"{facts.STAMP_COLUMNS} FROM {facts.STAMP_FROM}"
        )
    return driver_sql(text(sql))


# What became of a message (the keys of `Inbox._finish`), by `message_id`.
_FINISH = driver_sql(
    text(
        "UPDATE hl7_message SET status = :status, ack = :ack, ack_code = :ack_code, "
        "error = :error, patient_id = :patient_id, finished_at = :finished_at "
        "WHERE id = :message_id"
    )
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """The result of `store`: what to send now, and what is left to process."""

    message_id: int
    acks: tuple[bytes, ...] = ()
    """Encoded ACKs to send at once: a commit ACK, or the stored ACKs of a duplicate."""
    pending: Message | None = None
    """The parsed message, when it still has to be processed."""
    duplicate: bool = False


def new_control_id() -> str:
    """MSH-10 of an ACK we send: unique, and within ST's 20 characters."""
    return uuid.uuid4().hex[:20]


class Inbox:
    """Stores and processes inbound messages with sessions from `session_factory`."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        clock: Callable[[], datetime] = utcnow,
        default_charset: str = "UNICODE UTF-8",
    ) -> None:
        self.session_factory = session_factory
        self.clock = clock
        self.default_charset = default_charset

    # --- transaction 1 ------------------------------------------------------------------

    def store(self, raw: bytes, *, caller: Caller | None = None) -> Stored:
        caller = caller or Caller()
        peer = caller.describe()
        if b"\x00" in raw:
            # No HL7 data type holds NUL, and PostgreSQL text cannot store it: refuse it here,
            # or the insert below fails and the sender, never answered, resends for ever.
            problem = Problem(
                segment_id="MSH",
                code=ErrorCode.DATA_TYPE_ERROR,
                message="the message holds a NUL byte (0x00)",
            )
            return self._store_unreadable(raw, problem, peer=peer)
        try:
            message = parse_message(raw, default_charset=self.default_charset)
        except MessageStructureError as exc:
            return self._store_unreadable(raw, exc.problem, peer=peer)
        msh = message.header
        code, trigger, _ = message.message_type
        application, facility = msh.component(3, 1), msh.component(4, 1)
        if not caller.may_send_as(application, facility):
            return self._store_forbidden_sender(raw, message, caller)
        too_long = control_id_problem(message)
        if too_long is not None:
            # Cut to the column, two different control IDs could pass for one: refuse it.
            return self._store_refused(raw, message, too_long, peer=peer)
        request = requested_acknowledgements(message)
        commit_code = request.commit_code(Outcome.ACCEPTED)
        commit_ack = None
        if commit_code is not None:
            commit_ack = build_ack(
                message, code=commit_code, control_id=new_control_id(), now=self.clock()
            ).to_er7()
        values = {
            "direction": INBOUND,
            "status": RECEIVED,
            "partner": f"{msh.component(3, 1)}^{msh.component(4, 1)} {peer}".strip()[:200],
            "sending_application": msh.component(3, 1)[:100],
            "sending_facility": msh.component(4, 1)[:100],
            "control_id": message.control_id[:64],
            "message_type": f"{code}^{trigger}"[:32],
            "raw": raw,
            "charset": message.charset,
            "commit_ack": commit_ack,
            "error": "",
            "attempts": 0,
        }
        with self.session_factory() as session:
            # An order processed in this transaction asks for the catalog next: its stamp comes
            # with the row's INSERT.
            stamped = commit_ack is None and (code, trigger) in ORDER_MESSAGES
            new_id = self._insert(session, values, stamped=stamped)
            if new_id is None:
                return self._repeat(session, values, message)
            if commit_ack is None:
                # No commit ACK is due, so nothing needs the raw message committed on its own:
                # it is processed in the same transaction (one commit instead of two). A
                # refusal rolls the whole transaction back and stores the raw message again
                # with its answer, rather than paying a savepoint's two round trips on every
                # message for the rare one that fails.
                finished, undone = self._finish(session, message, caller, savepoint=False)
                if undone:
                    return self._store_failed(session, values, finished, message)
                session.connection().exec_driver_sql(_FINISH, {"message_id": new_id, **finished})
                session.commit()
                return Stored(message_id=new_id, acks=_answer(finished, message))
            session.commit()
        acks = (encode_message_text(commit_ack, message.charset),)
        return Stored(message_id=new_id, acks=acks, pending=message)

    def _store_failed(
        self,
        session: Session,
        values: Mapping[str, object],
        finished: Mapping[str, object],
        message: Message,
    ) -> Stored:
        """Processing failed and the transaction was rolled back with the raw message's row:
        store the raw message again with what became of it (its AE/AR), in one INSERT."""
        new_id = self._insert(session, {**values, **finished})
        if new_id is None:
            # Another connection stored the same message while this one was rolled back: its
            # answer is the answer (as for any repeat).
            return self._repeat(session, values, message)
        session.commit()
        return Stored(message_id=new_id, acks=_answer(finished, message))

    def _repeat(self, session: Session, values: Mapping[str, object], message: Message) -> Stored:
        """The message is stored already (same sender and MSH-10): its stored answer is sent
        again, or, stored but never answered (the process died), it is processed now."""
        existing = self._existing(session, values)
        session.commit()
        if existing.status != RECEIVED:
            return Stored(message_id=existing.id, acks=_stored_acks(existing), duplicate=True)
        return Stored(message_id=existing.id, pending=message, duplicate=True)

    def _insert(
        self, session: Session, values: Mapping[str, object], *, stamped: bool = False
    ) -> int | None:
        statement = _insert_statement(tuple(values), bool(values["control_id"]), stamped)
        # On the session's connection: a Core statement needs none of the ORM's handling.
        result = session.connection().exec_driver_sql(statement, dict(values))
        if not stamped:
            new_id = result.scalar()
            return None if new_id is None else int(new_id)
        new_id, *stamp = result.one()._tuple()
        facts.remember(session, *stamp)
        return None if new_id is None else int(new_id)

    def _existing(self, session: Session, values: Mapping[str, object]) -> Hl7Message:
        return session.scalars(
            select(Hl7Message).where(
                Hl7Message.direction == INBOUND,
                Hl7Message.sending_application == values["sending_application"],
                Hl7Message.sending_facility == values["sending_facility"],
                Hl7Message.control_id == values["control_id"],
            )
        ).one()

    def _store_unreadable(self, raw: bytes, problem: Problem, *, peer: str) -> Stored:
        ack, control_id, sender = _rejection(raw, problem, self.clock())
        values = {
            "direction": INBOUND,
            "status": REJECTED,
            "partner": f"{sender[0]}^{sender[1]} {peer}".strip()[:200],
            "sending_application": sender[0][:100],
            "sending_facility": sender[1][:100],
            "control_id": control_id[:64],
            "message_type": "",
            "raw": raw,
            "charset": ack.charset,
            "ack": ack.to_er7(),
            "ack_code": AckCode.APPLICATION_REJECT.value,
            "error": str(problem),
            "attempts": 0,
            "finished_at": self.clock(),
        }
        with self.session_factory() as session:
            new_id = self._insert(session, values)
            if new_id is None:
                existing = self._existing(session, values)
                session.commit()
                return Stored(message_id=existing.id, acks=_stored_acks(existing), duplicate=True)
            session.commit()
        return Stored(message_id=new_id, acks=(ack.encode(),))

    def _store_forbidden_sender(self, raw: bytes, message: Message, caller: Caller) -> Stored:
        """AR on MSH-3: this caller may not speak as the sender it names (lab.hl7.senders)."""
        application = message.header.component(3, 1)
        facility = message.header.component(4, 1)
        who = caller.subject.text if caller.subject is not None else caller.address
        problem = Problem(
            segment_id="MSH",
            field_position=3,
            code=ErrorCode.TABLE_VALUE_NOT_FOUND,
            message=f"sender {application}^{facility} is not allowed for this connection",
        )
        log.warning(
            "hl7: refused a message naming sender %s^%s from %s", application, facility, who
        )
        return self._store_refused(
            raw,
            message,
            problem,
            peer=caller.describe(),
            note=f"; caller {who}; MSH-10 {message.control_id}",
        )

    def _store_refused(
        self, raw: bytes, message: Message, problem: Problem, *, peer: str, note: str = ""
    ) -> Stored:
        """Keep a message that is refused before processing, with its AR, and without its
        control ID as the duplicate key (it is never processed, so a resend cannot double)."""
        application = message.header.component(3, 1)
        facility = message.header.component(4, 1)
        ack = build_ack(
            message,
            code=AckCode.APPLICATION_REJECT,
            control_id=new_control_id(),
            now=self.clock(),
            problems=(problem,),
        )
        values = {
            "direction": INBOUND,
            "status": REJECTED,
            "partner": f"{application}^{facility} {peer}".strip()[:200],
            "sending_application": application[:100],
            "sending_facility": facility[:100],
            "control_id": "",  # never the duplicate key of another message
            "message_type": "{}^{}".format(*message.message_type[:2])[:32],
            "raw": raw,
            "charset": message.charset,
            "ack": ack.to_er7(),
            "ack_code": AckCode.APPLICATION_REJECT.value,
            "error": f"{problem}{note}"[:2000],
            "attempts": 0,
            "finished_at": self.clock(),
        }
        with self.session_factory() as session:
            new_id = self._insert(session, values)
            session.commit()
        assert new_id is not None  # control_id is empty: no conflict is possible
        return Stored(message_id=new_id, acks=(encode_message_text(ack.to_er7(), message.charset),))

    # --- transaction 2 ------------------------------------------------------------------

    def process(
        self, message_id: int, message: Message, *, caller: Caller | None = None
    ) -> tuple[bytes, ...]:
        """Process a stored message; returns the application ACK to send (if one is due)."""
        with self.session_factory() as session:
            row = session.get(Hl7Message, message_id, with_for_update=True)
            if row is None:
                raise LookupError(f"hl7 message {message_id} is not stored")
            if row.status != RECEIVED:
                # Another connection processed the same message meanwhile.
                session.commit()
                return _stored_acks(row, commit=False)
            finished, _ = self._finish(session, message, caller or Caller(), savepoint=True)
            row.status = HL7_LIFECYCLE.check(row.status, finished["status"])
            for name, value in finished.items():
                setattr(row, name, value)
            ack_text = finished["ack"]
            session.commit()
        if ack_text is None:
            return ()
        return (encode_message_text(ack_text, message.charset),)

    def _finish(
        self, session: Session, message: Message, caller: Caller, *, savepoint: bool
    ) -> tuple[dict[str, Any], bool]:
        """Apply the message and build its answer: the values of the log row that say what
        became of it, written in the caller's transaction; and whether that transaction was
        rolled back (`undone`: what the caller wrote before is gone with it).

        With `savepoint` the message is applied inside one, and a refusal rolls back only
        what the message did; without, a refusal rolls back the whole transaction."""
        outcome, problems, patient_id, summary, order_ids, undone = self._apply(
            session, message, caller, savepoint=savepoint
        )
        code = requested_acknowledgements(message).application_code(outcome)
        ack_text = None
        if code is not None:
            lines: list[OrderLine] = []
            if code is AckCode.APPLICATION_ACCEPT and response_type(message, code):
                lines = order_lines(session, message, order_ids)
            ack_text = build_ack(
                message,
                code=code,
                control_id=new_control_id(),
                now=self.clock(),
                problems=problems,
                text=summary if outcome is not Outcome.ACCEPTED else "",
                orders=lines,
            ).to_er7()
        finished = {
            "status": HL7_LIFECYCLE.check(RECEIVED, _STATUS[outcome]),
            "ack": ack_text,
            "ack_code": None if code is None else code.value,
            "error": "; ".join(str(p) for p in problems if p.severity is Severity.ERROR),
            "patient_id": patient_id,
            "finished_at": self.clock(),
        }
        return finished, undone

    def _apply(
        self, session: Session, message: Message, caller: Caller, *, savepoint: bool
    ) -> tuple[Outcome, tuple[Problem, ...], int | None, str, tuple[int, ...], bool]:
        mapped = map_inbound(message)
        problems = mapped.problems
        if mapped.content is None:
            return outcome_of(problems), problems, None, _first_error(problems), (), False
        actor = interface_actor(mapped.content.header.sending_application, via=caller.describe())
        nested = session.begin_nested() if savepoint else None

        def undo() -> None:
            if nested is not None:
                nested.rollback()
            else:
                session.rollback()

        undone = nested is None
        try:
            handled = handle(session, actor=actor, message=message, content=mapped.content)
            if nested is not None:
                nested.commit()
        except MessageRefused as exc:
            undo()
            refused = problems + tuple(exc.problems)
            return outcome_of(refused), refused, None, _first_error(refused), (), undone
        except Hl7Error as exc:
            undo()
            log.error(
                "hl7: building an answer to %s failed: %s",
                message.control_id,
                describe_failure(exc),
            )
            internal = _internal_problem(f"internal error ({type(exc).__name__})")
            return Outcome.ERROR, (*problems, internal), None, internal.message, (), undone
        except DataError as exc:
            # A value the database cannot take (the length checks should have caught it): the
            # same message would fail the same way when resent, so it is answered, not dropped.
            undo()
            log.error("hl7: %s could not be stored: %s", message.control_id, describe_failure(exc))
            internal = _internal_problem("a value does not fit what the lab stores")
            return Outcome.ERROR, (*problems, internal), None, internal.message, (), undone
        except Exception as exc:
            undo()
            if isinstance(exc, SQLAlchemyError):
                raise  # the database is in trouble: no answer, the sender will resend
            # A bug: keep the message and tell the sender, rather than leave it unanswered.
            log.error("hl7: handler failed on %s: %s", message.control_id, describe_failure(exc))
            internal = _internal_problem(f"internal error ({type(exc).__name__})")
            return Outcome.ERROR, (*problems, internal), None, internal.message, (), undone
        return (
            Outcome.ACCEPTED,
            problems,
            handled.patient_id,
            handled.summary,
            handled.order_ids,
            False,
        )


def _answer(finished: Mapping[str, Any], message: Message) -> tuple[bytes, ...]:
    """The encoded application ACK of a finished message, if one is due."""
    ack_text = finished["ack"]
    return (encode_message_text(ack_text, message.charset),) if ack_text else ()


def _internal_problem(text: str) -> Problem:
    return Problem(segment_id="MSH", code=ErrorCode.APPLICATION_INTERNAL_ERROR, message=text)


def _first_error(problems: tuple[Problem, ...]) -> str:
    for problem in problems:
        if problem.severity is Severity.ERROR:
            return problem.message[:200]
    return ""


def _stored_acks(row: Hl7Message, *, commit: bool = True) -> tuple[bytes, ...]:
    texts = [row.commit_ack] if commit else []
    texts.append(row.ack)
    return tuple(encode_message_text(text, row.charset) for text in texts if text)


def _rejection(raw: bytes, problem: Problem, now: datetime) -> tuple[Message, str, tuple[str, str]]:
    """An AR for bytes that are no readable message, built from what MSH holds, if anything."""
    first_line = raw.lstrip(b"\r\n").split(b"\r", 1)[0].split(b"\n", 1)[0]
    line = first_line.replace(b"\x00", b"?").decode("latin-1")
    if line.startswith("MSH") and len(line) > 3:
        # The answer is encoded in ISO 8859-1 (the only reading that cannot fail), so its
        # MSH-18 must say so rather than echo a character set the bytes are not in.
        fields = line.split(line[3])[:18]
        fields += [""] * (18 - len(fields))
        fields[17] = "8859/1"
        line = line[3].join(fields)
    try:
        header = parse_text(line, charset="8859/1")
        if header.header.name != "MSH":
            raise MessageStructureError(problem)
        sender = (header.header.component(3, 1), header.header.component(4, 1))
        try:
            ack = build_ack(
                header,
                code=AckCode.APPLICATION_REJECT,
                control_id=new_control_id(),
                now=now,
                problems=(problem,),
            )
            ack.encode()
        except Hl7Error:
            ack = _bare_rejection(problem, now, header.control_id)
        return ack, header.control_id, sender
    except Hl7Error:
        return _bare_rejection(problem, now, ""), "", ("", "")


def _bare_rejection(problem: Problem, now: datetime, control_id: str) -> Message:
    ack = build_message(
        [
            (
                "MSH",
                {
                    3: "LAB",
                    7: format_timestamp(now),
                    9: ("ACK", "", "ACK"),
                    10: new_control_id(),
                    11: "P",
                    12: "2.5.1",
                },
            ),
            ("MSA", {1: AckCode.APPLICATION_REJECT.value, 2: control_id}),
            (
                "ERR",
                {
                    2: (problem.segment_id, str(problem.segment_sequence)),
                    3: (str(int(problem.code)), problem.code.text, "HL70357"),
                    4: problem.severity.value,
                    8: problem.message,
                },
            ),
        ]
    )
    return ack
