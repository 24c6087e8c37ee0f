"""Shared test helpers: sample messages, wires that cut, flip and drop bytes."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

from hypothesis import strategies as st

from instruments.astm.events import Event, Sentinel
from instruments.astm.link import Connection, Role

DATA = Path(__file__).resolve().parents[2] / "data" / "astm"

HEADER = b"H|\\^&|||TestAnalyser^1|||||LIS||P|LIS2-A2|20260127081500"
TERMINATOR = b"L|1|N"
SAMPLE_MESSAGE = [
    HEADER,
    b"P|1||12345678901||Nordmann^Kari",
    b"O|1|LAB0001234||^^^HB\\^^^CRP|R",
    b"R|1|^^^HB|13.2|g/dL|12.0 to 16.0|N||F",
    b"R|2|^^^CRP|12|mg/L|0 to 5|H||F",
    TERMINATOR,
]

# Bytes a frame's text may carry: printable ASCII and the upper half of ISO 8859-1.
_TEXT_BYTES = bytes(range(0x20, 0x7F)) + bytes(range(0xA0, 0x100))


@st.composite
def record_bytes(draw: st.DrawFn, *, max_size: int = 600) -> bytes:
    """One raw record that is not an L record (so it cannot end the message early)."""
    kind = draw(st.sampled_from([b"P", b"O", b"R", b"C", b"M"]))
    body = draw(
        st.binary(max_size=max_size).map(
            lambda raw: bytes(_TEXT_BYTES[b % len(_TEXT_BYTES)] for b in raw)
        )
    )
    return kind + b"|" + body


def messages(*, max_records: int = 6, max_size: int = 600) -> st.SearchStrategy[list[bytes]]:
    return st.lists(record_bytes(max_size=max_size), max_size=max_records).map(
        lambda body: [HEADER, *body, TERMINATOR]
    )


def drain(connection: Connection) -> list[Event]:
    events: list[Event] = []
    while not isinstance(event := connection.next_event(), Sentinel):
        events.append(event)
    return events


def fragments(data: bytes, rng: random.Random, *, max_piece: int = 40) -> list[bytes]:
    """`data` cut at random places (pieces of 1..max_piece bytes)."""
    pieces: list[bytes] = []
    position = 0
    while position < len(data):
        size = rng.randint(1, max_piece)
        pieces.append(data[position : position + size])
        position += size
    return pieces


class FaultyWire:
    """Cuts what each side writes at random places and flips chosen bits.

    `flips` maps (writer, offset in that writer's whole output) to a bit mask; `drops` lists
    (writer, offset) of bytes that never arrive; `replace` swaps a byte for another.
    """

    def __init__(
        self,
        rng: random.Random,
        *,
        flips: dict[tuple[Role, int], int] | None = None,
        drops: Iterable[tuple[Role, int]] = (),
        replace: dict[tuple[Role, int], int] | None = None,
        max_piece: int = 40,
    ) -> None:
        self.rng = rng
        self.flips = flips or {}
        self.drops = set(drops)
        self.replace = replace or {}
        self.max_piece = max_piece
        self.offsets = {Role.HOST: 0, Role.INSTRUMENT: 0}

    def __call__(self, writer: Role, data: bytes) -> list[bytes]:
        start = self.offsets[writer]
        self.offsets[writer] += len(data)
        out = bytearray()
        for index, byte in enumerate(data):
            key = (writer, start + index)
            if key in self.drops:
                continue
            byte = self.replace.get(key, byte)
            out.append(byte ^ self.flips.get(key, 0))
        return fragments(bytes(out), self.rng, max_piece=self.max_piece)
