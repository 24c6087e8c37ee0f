"""Events reported by the link-layer `Connection` (see `instruments.astm.link`).

Records travel as raw bytes (without their CR) so the caller decodes them with the instrument's
character set (`instruments.astm.records`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class Direction(enum.Enum):
    """Which way the transfer phase runs, seen from this end of the line."""

    RECEIVING = "receiving"
    SENDING = "sending"


class AbortReason(enum.Enum):
    """Why a transfer phase ended without delivering a whole message."""

    NO_REPLY = "no reply within 15 s"  # LIS1-A 6.5.2.1, sender timer
    TOO_MANY_ATTEMPTS = "frame refused six times"  # LIS1-A 6.3.5
    RECEIVER_INTERRUPT = "receiver asked us to stop (EOT in place of ACK)"  # LIS1-A 6.3.6
    NO_FRAME = "no frame within 30 s"  # LIS1-A 6.5.2.2, receiver timer
    CANCELLED = "cancelled by the application"


class Sentinel(enum.Enum):
    """What `next_event()` returns when it has no event."""

    NEED_DATA = "NEED_DATA"  # nothing more until more bytes arrive or time passes
    PAUSED = "PAUSED"  # waiting for `confirm_received()` or `reject_received()`


NEED_DATA: Final = Sentinel.NEED_DATA
PAUSED: Final = Sentinel.PAUSED


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkEstablished:
    """ENQ answered by ACK: a transfer phase begins."""

    direction: Direction


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived:
    """Records received, each reassembled from its ETB/ETX frames, without its CR.

    `needs_confirmation`: the frame that closed the message (the one completing an L record)
    is not yet acknowledged; call `confirm_received()` once the records are committed, or
    `reject_received()` to make the sender send that frame again.
    `complete`: the records end with an L (terminator) record. An incomplete message arrives
    when the sender ends the transfer phase (EOT) without one; those frames were already
    acknowledged, so it needs no confirmation.
    """

    records: tuple[bytes, ...]
    needs_confirmation: bool
    complete: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageSent:
    """Every frame of a queued message was acknowledged and EOT was sent."""

    message_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferEnded:
    """EOT: the line is neutral again after a normal transfer phase."""

    direction: Direction


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferAborted:
    """A transfer phase ended early.

    Sending: the message `message_number` was given up (its `records` are returned so the
    application can queue it again). Receiving (30 s without a frame): `records` are the
    records received so far, discarded as an incomplete message.
    """

    reason: AbortReason
    direction: Direction
    message_number: int | None = None
    records: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameRejected:
    """We answered a received frame with NAK: the peer broke a rule (a remote protocol error)."""

    reason: str
    frame_number: int | None


class BidRefusal(enum.Enum):
    """Why our ENQ did not open a transfer phase."""

    BUSY = "receiver busy (NAK)"  # LIS1-A 6.2.4: wait at least 10 s
    CONTENTION = "line contention (ENQ answered by ENQ)"  # LIS1-A 6.2.5: the instrument wins
    NO_REPLY = "no reply within 15 s"  # LIS1-A 6.5.2.1


@dataclass(frozen=True, slots=True, kw_only=True)
class BidRefused:
    """Our ENQ did not open a transfer phase; the message stays queued until `retry_at`."""

    reason: BidRefusal
    retry_at: float


Event = (
    LinkEstablished
    | MessageReceived
    | MessageSent
    | TransferEnded
    | TransferAborted
    | FrameRejected
    | BidRefused
)
