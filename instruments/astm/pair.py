"""Two link-layer `Connection`s joined in memory, with a fake clock: no sockets, no sleeping.

Tests, the virtual analyser and benchmarks use it to hold a whole conversation. What one side
writes passes through a `Wire` (which may cut it into pieces, flip bits or drop bytes) before the
other side receives it. When nothing moves, the clock jumps to the next timer of either side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from instruments.astm.events import Event, MessageReceived, Sentinel
from instruments.astm.link import Connection, Role

#: Turns the bytes one side wrote into the pieces the other side reads (one call per write).
Wire = Callable[[Role, bytes], list[bytes]]
#: Decides on a message awaiting confirmation: True confirms it, False rejects it.
Decision = Callable[[Role, MessageReceived], bool]


def straight_wire(_writer: Role, data: bytes) -> list[bytes]:
    return [data] if data else []


def confirm_all(_receiver: Role, _message: MessageReceived) -> bool:
    return True


@dataclass(slots=True)
class Transcript:
    """Every piece that crossed the wire, in order: (time, writer, bytes as delivered)."""

    pieces: list[tuple[float, Role, bytes]] = field(default_factory=list)


class ConnectionPair:
    """A host and an instrument `Connection` joined by a `Wire`."""

    def __init__(
        self,
        *,
        wire: Wire = straight_wire,
        decide: Decision = confirm_all,
        now: float = 0.0,
    ) -> None:
        self.host = Connection(role=Role.HOST)
        self.instrument = Connection(role=Role.INSTRUMENT)
        self.now = now
        self.wire = wire
        self.decide = decide
        self.events: dict[Role, list[Event]] = {Role.HOST: [], Role.INSTRUMENT: []}
        self.transcript = Transcript()

    def side(self, role: Role) -> Connection:
        return self.host if role is Role.HOST else self.instrument

    def pump(self) -> bool:
        """Move what each side has written to the other and drain events; True if anything moved."""
        moved = False
        for writer in (Role.HOST, Role.INSTRUMENT):
            reader = Role.INSTRUMENT if writer is Role.HOST else Role.HOST
            data = self.side(writer).data_to_send()
            if not data:
                continue
            moved = True
            for piece in self.wire(writer, data):
                self.transcript.pieces.append((self.now, writer, piece))
                self.side(reader).receive_data(piece, self.now)
                self._drain(reader)
        for role in (Role.HOST, Role.INSTRUMENT):
            self._drain(role)
        return moved

    def _drain(self, role: Role) -> None:
        connection = self.side(role)
        while True:
            event = connection.next_event()
            if isinstance(event, Sentinel):
                return
            self.events[role].append(event)
            if isinstance(event, MessageReceived) and event.needs_confirmation:
                if self.decide(role, event):
                    connection.confirm_received(self.now)
                else:
                    connection.reject_received(self.now)

    def run(self, *, until: Callable[[], bool] | None = None, max_time: float = 3600.0) -> None:
        """Pump until quiet, then advance the clock to the next timer; stop when `until()` holds,
        when no timer is left, or at `max_time` seconds after the start."""
        limit = self.now + max_time
        while True:
            while self.pump():
                pass
            if until is not None and until():
                return
            deadlines = [
                deadline
                for deadline in (self.host.next_deadline(), self.instrument.next_deadline())
                if deadline is not None
            ]
            if not deadlines:
                return
            self.now = max(self.now, min(deadlines))
            if self.now > limit:
                return
            for connection in (self.host, self.instrument):
                connection.tick(self.now)
