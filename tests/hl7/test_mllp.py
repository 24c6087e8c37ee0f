"""MLLP framing: any fragmentation, merging, garbage, corruption, oversize, close."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.hl7.codec.er7 import parse_message
from lab.hl7.codec.errors import Hl7Error, LocalProtocolError, MllpFramingError
from lab.hl7.codec.mllp import CLOSED, NEED_DATA, MllpDecoder, frame

MESSAGE = "MSH|^~\\&|EPIC|HMN|LAB|STOLAV|20261127||ADT^A08|{n}|P|2.5.1\rPID|1||{n}||Sætre\r"


def messages(count: int) -> list[bytes]:
    return [MESSAGE.format(n=n).encode() for n in range(count)]


def drain(decoder: MllpDecoder) -> list[bytes]:
    out: list[bytes] = []
    while True:
        item = decoder.next_message()
        if item is NEED_DATA or item is CLOSED:
            return out
        assert isinstance(item, bytes)
        out.append(item)


def feed(stream: bytes, cuts: list[int], decoder: MllpDecoder) -> list[bytes]:
    out: list[bytes] = []
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    for start, end in itertools.pairwise(points):
        decoder.receive_data(stream[start:end])
        out += drain(decoder)
    return out


garbage = st.binary(max_size=20).map(lambda b: b.replace(b"\x0b", b""))


@settings(max_examples=300, deadline=None)
@given(
    count=st.integers(1, 5),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
    gaps=st.lists(garbage, min_size=6, max_size=6),
)
def test_any_fragmentation_with_garbage_between_blocks(
    count: int, cuts: list[int], gaps: list[bytes]
) -> None:
    originals = messages(count)
    stream = b"".join(gaps[i] + frame(m) for i, m in enumerate(originals)) + gaps[count]
    decoder = MllpDecoder()
    assert feed(stream, cuts, decoder) == originals
    assert decoder.discarded_bytes == sum(len(g) for g in gaps[: count + 1])
    assert decoder.discarded_blocks == 0
    decoder.receive_data(b"")
    assert decoder.next_message() is CLOSED


def test_same_bytes_whole_one_at_a_time_and_with_trailing_data() -> None:
    originals = messages(3)
    stream = b"".join(frame(m) for m in originals)
    whole = MllpDecoder()
    whole.receive_data(stream)
    assert drain(whole) == originals
    single = MllpDecoder()
    assert feed(stream, list(range(len(stream))), single) == originals
    trailing = MllpDecoder()
    trailing.receive_data(stream + b"\x0bMSH|partial")
    assert drain(trailing) == originals
    assert trailing.pending_bytes == len(b"\x0bMSH|partial")


@settings(max_examples=300, deadline=None)
@given(
    count=st.integers(1, 5),
    damage=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 10_000), max_size=10),
)
def test_corrupted_framing_never_delivers_a_wrong_message(
    count: int, damage: list[tuple[int, int]], cuts: list[int]
) -> None:
    originals = messages(count)
    stream = bytearray(b"".join(frame(m) for m in originals))
    framing = [i for i, byte in enumerate(stream) if byte in (0x0B, 0x1C, 0x0D)]
    for where, byte in damage:
        # Hit the framing bytes (and the CRs that end segments) where it hurts most.
        stream[framing[where % len(framing)]] = byte
    decoder = MllpDecoder()
    delivered = feed(bytes(stream), cuts, decoder)
    for payload in delivered:
        # Framing alone cannot see two blocks glued by a damaged 0x1C and 0x0B; the ER7 layer
        # must then refuse the result (a second MSH), never hand it on as one message.
        try:
            parsed = parse_message(payload)
        except Hl7Error:
            continue
        original = originals[int(parsed.control_id)] if parsed.control_id.isdigit() else b""
        # Only bytes hit by the damage (a segment CR inside the message) may differ.
        assert len(payload) == len(original)
        assert sum(a != b for a, b in zip(payload, original, strict=True)) <= len(damage)
    decoder.receive_data(b"")
    with contextlib.suppress(MllpFramingError):  # closing inside a damaged block is refused
        drain(decoder)
    assert decoder.next_message() is CLOSED


def test_lost_end_bytes_do_not_glue_two_messages() -> None:
    first, second = messages(2)
    decoder = MllpDecoder()
    decoder.receive_data(b"\x0b" + first + frame(second))  # the first block never ended
    assert drain(decoder) == [second]
    assert decoder.discarded_blocks == 1
    decoder.receive_data(b"\x0b" + first + b"\x1cX" + frame(second))  # FS without CR
    assert drain(decoder) == [second]
    assert decoder.discarded_blocks == 2


def test_oversize_block_raises() -> None:
    decoder = MllpDecoder(max_message_size=100)
    decoder.receive_data(b"\x0b" + b"A" * 100)
    assert decoder.next_message() is NEED_DATA
    decoder.receive_data(b"A")
    with pytest.raises(MllpFramingError, match="100 bytes"):
        decoder.next_message()
    complete = MllpDecoder(max_message_size=100)
    complete.receive_data(frame(b"A" * 101))
    with pytest.raises(MllpFramingError):
        complete.next_message()
    exact = MllpDecoder(max_message_size=100)
    exact.receive_data(frame(b"A" * 100))
    assert exact.next_message() == b"A" * 100


def test_close_inside_a_block_raises_and_close_between_blocks_is_clean() -> None:
    decoder = MllpDecoder()
    decoder.receive_data(b"\x0bMSH|half")
    assert decoder.next_message() is NEED_DATA
    decoder.receive_data(b"")
    with pytest.raises(MllpFramingError, match="closed inside"):
        decoder.next_message()
    assert decoder.next_message() is CLOSED
    with pytest.raises(MllpFramingError):
        decoder.receive_data(b"more")


def test_frame_refuses_unframeable_bytes() -> None:
    assert frame(b"MSH|x\r") == b"\x0bMSH|x\r\x1c\r"
    with pytest.raises(LocalProtocolError):
        frame(b"MSH|\x1c\r")
    with pytest.raises(LocalProtocolError):
        frame(b"MSH|\x0b\r")
