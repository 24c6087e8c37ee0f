from __future__ import annotations

import pytest
from astm.codec import make_checksum
from hypothesis import given
from hypothesis import strategies as st

from instruments.astm.errors import FrameError, LocalProtocolError
from instruments.astm.frames import build_frame, build_frames, checksum, parse_frame


def test_checksum_examples_from_the_protocol_notes() -> None:
    assert checksum(b"1L|1|N\r\x03") == b"04"
    assert checksum(b"2Q|1|2^1||||20011001153000\r\x03") == b"1B"


@given(st.binary(min_size=1, max_size=300))
def test_checksum_agrees_with_astm_2025(data: bytes) -> None:
    assert checksum(data) == make_checksum(data)


def test_frame_layout() -> None:
    assert build_frame(1, b"L|1|N\r", last=True) == b"\x021L|1|N\r\x0304\r\n"
    assert build_frame(9, b"abc", last=False)[:2] == b"\x021"  # FN is taken mod 8


def test_lowercase_checksum_is_accepted() -> None:
    frame = build_frame(2, b"R|1|^^^HB|13.2\r", last=True)
    lower = frame[:-4] + frame[-4:-2].lower() + frame[-2:]
    assert lower != frame or frame[-4:-2].isdigit()
    assert parse_frame(lower).text == b"R|1|^^^HB|13.2\r"


@pytest.mark.parametrize(
    "raw",
    [
        b"\x021L|1|N\r\x0305\r\n",  # wrong checksum
        b"\x021L|1|N\r\x04\x30\x34\r\n",  # no ETX/ETB
        b"\x028L|1|N\r\x03" + checksum(b"8L|1|N\r\x03") + b"\r\n",  # FN 8
        b"\x021L|\x05|N\r\x03" + checksum(b"1L|\x05|N\r\x03") + b"\r\n",  # ENQ in text
        b"\x021L|1|N\r\x03" + checksum(b"1L|1|N\r\x03") + b"\n\n",  # no CR before LF
        b"\x02\x03\r\n",  # too short
    ],
)
def test_bad_frames_are_refused(raw: bytes) -> None:
    with pytest.raises(FrameError):
        parse_frame(raw)


def test_records_are_cut_at_240_characters_and_each_starts_a_frame() -> None:
    long_record = b"R|1|" + b"x" * 500
    frames = build_frames([b"H|\\^&", long_record, b"L|1|N"])
    texts = [parse_frame(frame) for frame in frames]
    assert [len(t.text) for t in texts] == [6, 240, 240, 25, 6]
    assert [t.last for t in texts] == [True, False, False, True, True]
    assert [t.number for t in texts] == [1, 2, 3, 4, 5]
    assert b"".join(t.text for t in texts[1:4]) == long_record + b"\r"
    assert all(len(frame) <= 247 for frame in frames)


def test_frame_numbers_wrap_from_7_to_0() -> None:
    frames = build_frames([b"R|%d" % n for n in range(10)])
    assert [parse_frame(f).number for f in frames] == [1, 2, 3, 4, 5, 6, 7, 0, 1, 2]


@pytest.mark.parametrize("record", [b"", b"R|1\r2", b"R|\x02", b"R|\n", b"R|\x17"])
def test_records_that_a_frame_cannot_carry_are_our_error(record: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        build_frames([record])


@given(
    st.binary(max_size=500).filter(
        lambda b: (
            not set(b)
            & {
                0x01,
                0x02,
                0x03,
                0x04,
                0x05,
                0x06,
                0x0A,
                0x0D,
                0x10,
                0x11,
                0x12,
                0x13,
                0x14,
                0x15,
                0x16,
                0x17,
            }
        )
    ),
    st.integers(0, 7),
)
def test_build_then_parse_gives_the_text_back(record: bytes, first: int) -> None:
    record = b"R" + record
    frames = build_frames([record], first_number=first)
    parsed = [parse_frame(frame) for frame in frames]
    assert b"".join(p.text for p in parsed) == record + b"\r"
    assert [p.number for p in parsed] == [(first + i) % 8 for i in range(len(frames))]


@given(st.integers(0, 400), st.integers(0, 7))
def test_any_single_bit_flip_is_detected(position_seed: int, bit: int) -> None:
    frame = build_frame(3, b"R|1|^^^HB|13.2|g/dL\r", last=True)
    position = 1 + position_seed % (len(frame) - 3)  # FN through the checksum and CR
    damaged = bytearray(frame)
    damaged[position] ^= 1 << bit
    if damaged[-4:-2].upper() == frame[-4:-2] and position in (len(frame) - 4, len(frame) - 3):
        return  # a case flip of a hex letter is the same checksum
    with pytest.raises(FrameError):
        parse_frame(bytes(damaged))
