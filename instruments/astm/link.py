"""The ASTM E1381 (CLSI LIS1-A) link layer as a state machine: bytes and time in, events out.

No I/O and no clock, in the style of h11. One `Connection` per end of the line; the same class
plays the LIS (``Role.HOST``) or the analyser (``Role.INSTRUMENT``); the role only matters when
both bid at once (contention: the instrument wins, LIS1-A 6.2.5).

Use::

    connection = Connection(role=Role.HOST)
    connection.receive_data(chunk, now)          # whatever one read returned
    while (event := connection.next_event()) not in (NEED_DATA, PAUSED):
        ...                                       # MessageReceived, MessageSent, ...
    transport.write(connection.data_to_send())    # after every call
    connection.tick(now)                          # at `connection.next_deadline()` at the latest

Sending: `send_message(records, now)` queues a message (a list of records as bytes, without
their CRs) and returns its number; the machine bids with ENQ as soon as the line is neutral and
no wait is running, frames each record, retransmits refused frames and reports `MessageSent` or
`TransferAborted` carrying that number. One message is sent per transfer phase.

Receiving, and commit before acknowledge (docs/architecture.md, rule 3): frames are acknowledged as
they arrive except the frame that completes an L (terminator) record. For that frame the
connection emits ``MessageReceived(records=..., needs_confirmation=True)`` and pauses
(`next_event()` returns `PAUSED`, later bytes stay buffered, no receiver timer runs). The
application commits the records and calls `confirm_received(now)`, which sends the withheld ACK,
or `reject_received(now)`, which sends NAK so the analyser sends the frame again and the message
is delivered again (store idempotently). The analyser only counts a message as delivered once that
ACK arrives, so nothing acknowledged is uncommitted. Answer within the analyser's 15 s reply
timer. If the peer ends the transfer phase (EOT) after records without an L record, those records
come as ``MessageReceived(complete=False, needs_confirmation=False)``: their frames were already
acknowledged and the standard gives no later reply. A partial record (ETB frames without their
ETX frame) is never delivered. After 30 s without a frame the receiver discards the incomplete
message (`TransferAborted` with `AbortReason.NO_FRAME`).

Every transition lives in `_TRANSITIONS` below: a (state, input) pair that is not there raises
`LocalProtocolError` for an application call; every input the peer can cause is in the table,
answered per the standard (NAK, ignore) and reported as an event when it is the peer's fault.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from instruments.astm.constants import (
    ABORT_RETRY_DELAY,
    ACK_BYTE,
    BUSY_RETRY_DELAY,
    CONTENTION_HOST_WAIT,
    CONTENTION_INSTRUMENT_DELAY,
    ENQ,
    ENQ_BYTE,
    EOT,
    EOT_BYTE,
    FIRST_FRAME_NUMBER,
    FRAME_NUMBER_MODULUS,
    INTERRUPT_NO_BID,
    LF,
    MAX_FRAME_ATTEMPTS,
    NAK,
    NAK_BYTE,
    RECEIVER_FRAME_TIMEOUT,
    SENDER_REPLY_TIMEOUT,
    STX,
)
from instruments.astm.constants import ACK as ACK_CODE
from instruments.astm.errors import FrameError, LocalProtocolError
from instruments.astm.events import (
    NEED_DATA,
    PAUSED,
    AbortReason,
    BidRefusal,
    BidRefused,
    Direction,
    Event,
    FrameRejected,
    LinkEstablished,
    MessageReceived,
    MessageSent,
    Sentinel,
    TransferAborted,
    TransferEnded,
)
from instruments.astm.frames import build_frames, check_record_for_link, parse_frame

__all__ = ["NEED_DATA", "PAUSED", "Connection", "Input", "Role", "State"]


class Role(enum.Enum):
    HOST = "host"  # the LIS ("computer system" in LIS1-A)
    INSTRUMENT = "instrument"  # the analyser


class State(enum.Enum):
    # Identity hash (members are singletons, compared by identity): `_TRANSITIONS` is looked up
    # for every byte and frame, and Enum's own hash is a Python call per lookup.
    __hash__ = object.__hash__

    NEUTRAL = "neutral"  # idle: only ENQ matters (LIS1-A 6.1)
    BIDDING = "bidding"  # our ENQ is out; waiting for ACK, NAK or ENQ
    SENDING = "sending"  # a frame is out; waiting for its reply
    RECEIVING = "receiving"  # we acknowledged the peer's ENQ; frames or EOT come
    CONFIRMING = "awaiting confirmation"  # a message arrived; its last ACK waits for the app


class Input(enum.Enum):
    __hash__ = object.__hash__  # as State's

    # from the peer
    ENQ = "ENQ"
    ACK = "ACK"
    NAK = "NAK"
    EOT = "EOT"
    OTHER = "other byte"
    FRAME = "frame"
    # from the application
    SEND = "send_message"
    CONFIRM = "confirm_received"
    REJECT = "reject_received"
    # from the clock
    TIMEOUT = "timer expired"
    BID_DUE = "a message waits and no wait runs"


_SINGLE_BYTE_INPUTS: Final = {ENQ: Input.ENQ, ACK_CODE: Input.ACK, NAK: Input.NAK, EOT: Input.EOT}


@dataclass(slots=True)
class _Outgoing:
    number: int
    records: tuple[bytes, ...]


@dataclass(slots=True)
class _Held:
    """The frame that completed a message, not yet acknowledged."""

    frame_number: int
    remaining_records: list[bytes]
    remaining_partial: bytes


class Connection:
    """One end of an ASTM E1381 line. See the module docstring for the API."""

    def __init__(self, *, role: Role) -> None:
        self.role = role
        self._state = State.NEUTRAL
        self._now = 0.0
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._events: deque[Event] = deque()
        self._deadline: float | None = None  # reply timer (sender) or frame timer (receiver)
        self._bid_not_before = 0.0
        self._yielded = False  # host gave way after contention; may bid again after receiving
        # sending
        self._queue: deque[_Outgoing] = deque()
        self._last_message_number = 0
        self._frames: list[bytes] = []
        self._frame_index = 0
        self._attempts = 0
        # receiving
        self._last_accepted: int | None = None
        self._records: list[bytes] = []
        self._partial = b""
        self._held: _Held | None = None
        self._frame_payload = b""  # the raw frame being handled

    # ----------------------------------------------------------------- what callers read

    @property
    def state(self) -> State:
        return self._state

    @property
    def queued_messages(self) -> int:
        """Messages waiting to be sent, the one in transfer included."""
        return len(self._queue)

    @property
    def buffered_bytes(self) -> int:
        """Bytes received and not yet a whole frame or record (a frame has at most 247)."""
        return len(self._inbox) + len(self._partial)

    @property
    def buffered_records(self) -> int:
        """Records of the message being received, not yet delivered."""
        return len(self._records)

    def next_deadline(self) -> float | None:
        """The latest time at which `tick` must be called, or None if no timer runs."""
        if self._state is State.NEUTRAL:
            return self._bid_not_before if self._queue else None
        return self._deadline

    def next_event(self) -> Event | Sentinel:
        """The next event, or NEED_DATA, or PAUSED while a message awaits confirmation."""
        if self._events:
            return self._events.popleft()
        return PAUSED if self._state is State.CONFIRMING else NEED_DATA

    def data_to_send(self) -> bytes:
        data = bytes(self._outbox)
        self._outbox.clear()
        return data

    # ----------------------------------------------------------------- what callers do

    def receive_data(self, data: bytes, now: float) -> None:
        self._now = now
        self._inbox += data
        self._run()

    def tick(self, now: float) -> None:
        self._now = now
        self._run()

    def send_message(self, records: Sequence[bytes], now: float) -> int:
        """Queue a message; return the number its `MessageSent`/`TransferAborted` will carry."""
        if not records:
            raise LocalProtocolError("a message needs at least one record")
        for record in records:
            check_record_for_link(record)
        self._now = now
        self._last_message_number += 1
        self._queue.append(_Outgoing(self._last_message_number, tuple(records)))
        self._handle(Input.SEND)
        self._run()
        return self._last_message_number

    def confirm_received(self, now: float) -> None:
        """The delivered message is committed: send the withheld ACK."""
        self._now = now
        self._handle(Input.CONFIRM)
        self._run()

    def reject_received(self, now: float) -> None:
        """The delivered message could not be committed: NAK its last frame (sent again)."""
        self._now = now
        self._handle(Input.REJECT)
        self._run()

    # ----------------------------------------------------------------- machinery

    def _handle(self, event: Input) -> None:
        row = _TRANSITIONS.get((self._state, event))
        if row is None:
            # Peer inputs are all in the table, so only our own misuse lands here.
            raise LocalProtocolError(f"{event.value} is not allowed in state {self._state.value}")
        handler, targets = row
        before = self._state
        handler(self)
        if self._state not in targets:
            raise RuntimeError(f"bug: {before.value} + {event.value} led to {self._state.value}")

    def _run(self) -> None:
        """Handle buffered bytes, then timers, then bid if a message waits and no wait runs."""
        while True:
            while self._state is not State.CONFIRMING:
                token = self._next_input()
                if token is None:
                    break
                self._handle(token)
            if self._deadline is None or self._now < self._deadline:
                break
            self._deadline = None
            self._handle(Input.TIMEOUT)
        if self._state is State.NEUTRAL and self._queue and self._now >= self._bid_not_before:
            self._handle(Input.BID_DUE)

    def _next_input(self) -> Input | None:
        inbox = self._inbox
        if not inbox:
            return None
        if self._state is State.RECEIVING:
            return self._next_receiving_input()
        byte = inbox[0]
        if self._state is State.NEUTRAL and byte != ENQ:
            # LIS1-A 6.1: in the neutral state everything but ENQ is ignored.
            start = inbox.find(ENQ_BYTE)
            del inbox[: len(inbox) if start < 0 else start]
            return Input.OTHER if start < 0 else self._next_input()
        del inbox[0]
        return _SINGLE_BYTE_INPUTS.get(byte, Input.OTHER)

    def _next_receiving_input(self) -> Input | None:
        inbox = self._inbox
        start = inbox.find(STX)
        end_of_transfer = inbox.find(EOT)
        # An EOT counts only between frames: inside a frame it is a damaged text byte, and the
        # frame will be refused once its LF arrives (or the 30 s timer clears it).
        if end_of_transfer >= 0 and (start < 0 or end_of_transfer < start):
            del inbox[: end_of_transfer + 1]
            return Input.EOT
        if start < 0:
            inbox.clear()  # LIS1-A 6.3.4: bytes before STX are discarded
            return None
        end = inbox.find(LF, start)
        if end < 0:
            del inbox[:start]
            return None
        self._frame_payload = bytes(inbox[start : end + 1])
        del inbox[: end + 1]
        return Input.FRAME

    def _bid(self) -> None:
        self._outbox += ENQ_BYTE
        self._state = State.BIDDING
        self._deadline = self._now + SENDER_REPLY_TIMEOUT

    def _wait_before_bidding(self, delay: float) -> float:
        self._bid_not_before = self._now + delay
        return self._bid_not_before

    # ----------------------------------------------------------------- handlers: sending

    def _queue_message(self) -> None:
        """Queued by `send_message`; `_run` bids when the line allows."""

    def _bid_accepted(self) -> None:
        self._state = State.SENDING
        self._frames = build_frames(self._queue[0].records, first_number=FIRST_FRAME_NUMBER)
        self._frame_index = 0
        self._events.append(LinkEstablished(direction=Direction.SENDING))
        self._send_frame(first_attempt=True)

    def _bid_busy(self) -> None:
        self._state = State.NEUTRAL
        self._deadline = None
        retry_at = self._wait_before_bidding(BUSY_RETRY_DELAY)
        self._events.append(BidRefused(reason=BidRefusal.BUSY, retry_at=retry_at))

    def _bid_contention(self) -> None:
        # LIS1-A 6.2.5: the instrument keeps its right to send and bids again after >= 1 s;
        # the host stops bidding and waits (up to 20 s) to receive the instrument's message.
        self._state = State.NEUTRAL
        self._deadline = None
        if self.role is Role.HOST:
            self._yielded = True
            retry_at = self._wait_before_bidding(CONTENTION_HOST_WAIT)
        else:
            retry_at = self._wait_before_bidding(CONTENTION_INSTRUMENT_DELAY)
        self._events.append(BidRefused(reason=BidRefusal.CONTENTION, retry_at=retry_at))

    def _bid_unanswered(self) -> None:
        self._outbox += EOT_BYTE  # LIS1-A 6.5.2.1: on timeout the sender goes to termination
        self._state = State.NEUTRAL
        retry_at = self._wait_before_bidding(ABORT_RETRY_DELAY)
        self._events.append(BidRefused(reason=BidRefusal.NO_REPLY, retry_at=retry_at))

    def _send_frame(self, *, first_attempt: bool) -> None:
        self._attempts = 1 if first_attempt else self._attempts + 1
        self._outbox += self._frames[self._frame_index]
        self._deadline = self._now + SENDER_REPLY_TIMEOUT

    def _frame_accepted(self) -> None:
        self._frame_index += 1
        if self._frame_index < len(self._frames):
            self._send_frame(first_attempt=True)
            return
        self._finish_sending()

    def _finish_sending(self) -> None:
        self._outbox += EOT_BYTE
        message = self._queue.popleft()
        self._to_neutral()
        self._events.append(MessageSent(message_number=message.number))
        self._events.append(TransferEnded(direction=Direction.SENDING))

    def _frame_refused(self) -> None:
        # LIS1-A 6.3.5: NAK or any character other than ACK/EOT: send the same frame again, at
        # most six times in all, then abort by going to termination.
        if self._attempts >= MAX_FRAME_ATTEMPTS:
            self._abort_sending(AbortReason.TOO_MANY_ATTEMPTS, ABORT_RETRY_DELAY)
            return
        self._send_frame(first_attempt=False)

    def _receiver_interrupt(self) -> None:
        # LIS1-A 6.3.6: EOT in place of ACK accepts the frame and asks us to stop; we stop, send
        # EOT and do not bid for 15 s.
        if self._frame_index == len(self._frames) - 1:
            self._finish_sending()  # the last frame was accepted: the message is delivered
            self._wait_before_bidding(INTERRUPT_NO_BID)
            return
        self._abort_sending(AbortReason.RECEIVER_INTERRUPT, INTERRUPT_NO_BID)

    def _reply_timeout(self) -> None:
        self._abort_sending(AbortReason.NO_REPLY, ABORT_RETRY_DELAY)

    def _abort_sending(self, reason: AbortReason, delay: float) -> None:
        self._outbox += EOT_BYTE
        message = self._queue.popleft()
        self._to_neutral()
        self._wait_before_bidding(delay)
        self._events.append(
            TransferAborted(
                reason=reason,
                direction=Direction.SENDING,
                message_number=message.number,
                records=message.records,
            )
        )

    def _to_neutral(self) -> None:
        self._state = State.NEUTRAL
        self._deadline = None
        self._frames = []
        self._frame_index = 0
        self._attempts = 0

    # ----------------------------------------------------------------- handlers: receiving

    def _ignore(self) -> None:
        """Input the standard says to ignore in this state."""

    def _establish_receiving(self) -> None:
        self._outbox += ACK_BYTE
        self._state = State.RECEIVING
        self._last_accepted = None
        self._records = []
        self._partial = b""
        self._deadline = self._now + RECEIVER_FRAME_TIMEOUT
        self._events.append(LinkEstablished(direction=Direction.RECEIVING))

    def _reply(self, reply: bytes) -> None:
        self._outbox += reply
        self._deadline = self._now + RECEIVER_FRAME_TIMEOUT  # restarted on each reply (6.5.2.2)

    def _frame_received(self) -> None:
        try:
            frame = parse_frame(self._frame_payload)
        except FrameError as error:
            self._reply(NAK_BYTE)
            self._events.append(FrameRejected(reason=str(error), frame_number=None))
            return
        if self._last_accepted is None:
            expected = FIRST_FRAME_NUMBER
        else:
            expected = (self._last_accepted + 1) % FRAME_NUMBER_MODULUS
        if frame.number != expected:
            if frame.number == self._last_accepted:
                # LIS1-A 6.3.4: our ACK was lost and the sender repeated the frame; it is
                # already taken, so acknowledge it again and drop it.
                self._reply(ACK_BYTE)
                return
            self._reply(NAK_BYTE)
            self._events.append(
                FrameRejected(
                    reason=f"frame number {frame.number}, expected {expected}",
                    frame_number=frame.number,
                )
            )
            return
        pieces = (self._partial + frame.text).split(b"\r")
        partial = pieces.pop()
        if frame.last and partial:
            pieces.append(partial)  # ETX without the record's CR: lenient, the record is whole
            partial = b""
        completed = [piece for piece in pieces if piece]
        end_of_message = _last_terminator(completed)
        if end_of_message < 0:
            self._records.extend(completed)
            self._partial = partial
            self._last_accepted = frame.number
            self._reply(ACK_BYTE)
            return
        message = (*self._records, *completed[: end_of_message + 1])
        self._held = _Held(
            frame_number=frame.number,
            remaining_records=completed[end_of_message + 1 :],
            remaining_partial=partial,
        )
        self._state = State.CONFIRMING
        self._deadline = None  # the application holds the line; the analyser's timer runs
        self._events.append(
            MessageReceived(records=message, needs_confirmation=True, complete=True)
        )

    def _confirm(self) -> None:
        held = self._take_held()
        self._records = held.remaining_records
        self._partial = held.remaining_partial
        self._last_accepted = held.frame_number
        self._state = State.RECEIVING
        self._reply(ACK_BYTE)

    def _reject(self) -> None:
        self._take_held()  # keep the records from before the frame; the frame comes again
        self._state = State.RECEIVING
        self._reply(NAK_BYTE)

    def _take_held(self) -> _Held:
        held = self._held
        if held is None:  # pragma: no cover - CONFIRMING always holds a frame
            raise LocalProtocolError("no message awaits confirmation")
        self._held = None
        return held

    def _end_of_transfer(self) -> None:
        if self._records:
            self._events.append(
                MessageReceived(
                    records=tuple(self._records), needs_confirmation=False, complete=False
                )
            )
        self._end_receiving()
        self._events.append(TransferEnded(direction=Direction.RECEIVING))

    def _frame_timeout(self) -> None:
        records = tuple(self._records)
        self._end_receiving()
        self._inbox.clear()
        self._events.append(
            TransferAborted(
                reason=AbortReason.NO_FRAME, direction=Direction.RECEIVING, records=records
            )
        )

    def _end_receiving(self) -> None:
        self._state = State.NEUTRAL
        self._deadline = None
        self._records = []
        self._partial = b""
        self._last_accepted = None
        if self._yielded:
            # We gave way after contention and have now received: bid again right away.
            self._yielded = False
            self._bid_not_before = self._now


def _last_terminator(records: list[bytes]) -> int:
    """Index of the last L (terminator) record in `records`, or -1."""
    for index in range(len(records) - 1, -1, -1):
        record = records[index]
        if record[:1] == b"L" and (len(record) == 1 or not record[1:2].isalnum()):
            return index
    return -1


_Handler = Callable[[Connection], None]
S, I = State, Input  # noqa: E741 - short names keep the table readable
NEUTRAL, BIDDING, SENDING = {S.NEUTRAL}, {S.BIDDING}, {S.SENDING}
RECEIVING, CONFIRMING = {S.RECEIVING}, {S.CONFIRMING}

# Everything that moves the state machine: (state, input) -> (handler, states it may lead to).
# Peer inputs a state can see all have a row; application inputs without a row raise
# LocalProtocolError. A handler that lands outside its row's states is a bug (RuntimeError).
_TRANSITIONS: Final[dict[tuple[State, Input], tuple[_Handler, frozenset[State]]]] = {
    (state, event): (handler, frozenset(targets))
    for (state, event), (handler, targets) in {
        # neutral (LIS1-A 6.1): answer ENQ, ignore the rest; bid when a message waits
        (S.NEUTRAL, I.ENQ): (Connection._establish_receiving, RECEIVING),
        (S.NEUTRAL, I.ACK): (Connection._ignore, NEUTRAL),
        (S.NEUTRAL, I.NAK): (Connection._ignore, NEUTRAL),
        (S.NEUTRAL, I.EOT): (Connection._ignore, NEUTRAL),
        (S.NEUTRAL, I.OTHER): (Connection._ignore, NEUTRAL),
        (S.NEUTRAL, I.SEND): (Connection._queue_message, NEUTRAL),
        (S.NEUTRAL, I.BID_DUE): (Connection._bid, BIDDING),
        # establishment (LIS1-A 6.2)
        (S.BIDDING, I.ACK): (Connection._bid_accepted, SENDING),
        (S.BIDDING, I.NAK): (Connection._bid_busy, NEUTRAL),
        (S.BIDDING, I.ENQ): (Connection._bid_contention, NEUTRAL),
        (S.BIDDING, I.EOT): (Connection._ignore, BIDDING),
        (S.BIDDING, I.OTHER): (Connection._ignore, BIDDING),
        (S.BIDDING, I.TIMEOUT): (Connection._bid_unanswered, NEUTRAL),
        (S.BIDDING, I.SEND): (Connection._queue_message, BIDDING),
        # transfer, sending side (LIS1-A 6.3)
        (S.SENDING, I.ACK): (Connection._frame_accepted, SENDING | NEUTRAL),
        (S.SENDING, I.NAK): (Connection._frame_refused, SENDING | NEUTRAL),
        (S.SENDING, I.ENQ): (Connection._frame_refused, SENDING | NEUTRAL),
        (S.SENDING, I.OTHER): (Connection._frame_refused, SENDING | NEUTRAL),
        (S.SENDING, I.EOT): (Connection._receiver_interrupt, NEUTRAL),
        (S.SENDING, I.TIMEOUT): (Connection._reply_timeout, NEUTRAL),
        (S.SENDING, I.SEND): (Connection._queue_message, SENDING),
        # transfer, receiving side (LIS1-A 6.3.4); other bytes are dropped before STX
        (S.RECEIVING, I.FRAME): (Connection._frame_received, RECEIVING | CONFIRMING),
        (S.RECEIVING, I.EOT): (Connection._end_of_transfer, NEUTRAL),
        (S.RECEIVING, I.TIMEOUT): (Connection._frame_timeout, NEUTRAL),
        (S.RECEIVING, I.SEND): (Connection._queue_message, RECEIVING),
        # the application commits before the last frame is acknowledged (no peer input is read)
        (S.CONFIRMING, I.CONFIRM): (Connection._confirm, RECEIVING),
        (S.CONFIRMING, I.REJECT): (Connection._reject, RECEIVING),
        (S.CONFIRMING, I.SEND): (Connection._queue_message, CONFIRMING),
    }.items()
}

#: Which peer inputs each state can produce (tests check each has a row in the table).
PEER_INPUTS_BY_STATE: Final[dict[State, frozenset[Input]]] = {
    S.NEUTRAL: frozenset({I.ENQ, I.OTHER}),
    S.BIDDING: frozenset({I.ENQ, I.ACK, I.NAK, I.EOT, I.OTHER}),
    S.SENDING: frozenset({I.ENQ, I.ACK, I.NAK, I.EOT, I.OTHER}),
    S.RECEIVING: frozenset({I.FRAME, I.EOT}),
    S.CONFIRMING: frozenset(),
}
del S, I, NEUTRAL, BIDDING, SENDING, RECEIVING, CONFIRMING
