"""Frames of ASTM E1381 (CLSI LIS1-A 6.3): build, read and check; no I/O.

A frame is ``<STX> FN text <ETB|ETX> C1 C2 <CR> <LF>``. FN is one digit, 1 on the first frame of a
transfer phase, then 2..7, 0, 1, ... The checksum is the sum of the bytes from FN through ETB or
ETX inclusive, modulo 256, written as two uppercase hex digits (we accept lowercase on receipt).
Every record starts in a new frame; a record longer than 240 characters of text is cut into
intermediate frames ending in ETB and a last frame ending in ETX whose text ends with the
record's CR (LIS1-A 6.3.1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from instruments.astm.constants import (
    CR,
    ETB,
    ETX,
    FIRST_FRAME_NUMBER,
    FRAME_NUMBER_MODULUS,
    LF,
    MAX_FRAME_TEXT,
    RESTRICTED_IN_TEXT,
    STX,
)
from instruments.astm.errors import FrameError, LocalProtocolError

_HEX_DIGITS = b"0123456789ABCDEF"
# bytes.translate(None, delete) removes these; a length change means one was present (fast path).
_RESTRICTED_BYTES = bytes(sorted(RESTRICTED_IN_TEXT))
_RESTRICTED_WITH_CR = bytes(sorted(RESTRICTED_IN_TEXT | {CR}))


def checksum(data: bytes) -> bytes:
    """Two uppercase hex digits of sum(data) mod 256; `data` runs from FN through ETB/ETX."""
    total = sum(data) & 0xFF
    return bytes((_HEX_DIGITS[total >> 4], _HEX_DIGITS[total & 0x0F]))


def check_record_for_link(record: bytes) -> None:
    """Raise `LocalProtocolError` if `record` cannot travel as frame text (LIS1-A 8.2).

    A record is given without its terminating CR; CR inside it would end it early.
    """
    if len(record.translate(None, _RESTRICTED_WITH_CR)) != len(record):
        bad = next(b for b in record if b in RESTRICTED_IN_TEXT or b == CR)
        raise LocalProtocolError(
            f"record carries control character 0x{bad:02X}, which a frame may not carry"
        )
    if not record:
        raise LocalProtocolError("an empty record cannot be sent")


def build_frame(number: int, text: bytes, *, last: bool) -> bytes:
    """One frame with FN `number` (taken mod 8); `last` ends it with ETX, otherwise ETB."""
    body = bytes((0x30 + number % FRAME_NUMBER_MODULUS,)) + text + bytes((ETX if last else ETB,))
    return bytes((STX,)) + body + checksum(body) + b"\r\n"


def build_frames(
    records: Iterable[bytes], *, first_number: int = FIRST_FRAME_NUMBER
) -> list[bytes]:
    """The frames carrying `records` (each without its CR), numbered from `first_number`."""
    frames: list[bytes] = []
    number = first_number
    for record in records:
        check_record_for_link(record)
        text = record + b"\r"
        for start in range(0, len(text), MAX_FRAME_TEXT):
            chunk = text[start : start + MAX_FRAME_TEXT]
            frames.append(build_frame(number, chunk, last=start + MAX_FRAME_TEXT >= len(text)))
            number += 1
    return frames


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """A received frame that passed every check."""

    number: int
    text: bytes
    last: bool  # ETX: the frame ends a record; ETB: intermediate frame


def parse_frame(raw: bytes) -> Frame:
    """Check and read one frame, ``STX ... LF`` inclusive; raise `FrameError` if it is bad.

    Order of checks matters: the checksum covers FN, so a corrupted FN is caught here before the
    link layer compares frame numbers (a single flipped bit always changes the sum mod 256).
    """
    if len(raw) < 7 or raw[0] != STX or raw[-1] != LF or raw[-2] != CR:
        raise FrameError("frame layout is not STX FN text ETB|ETX C1 C2 CR LF")
    terminator = raw[-5]
    if terminator != ETX and terminator != ETB:
        raise FrameError("frame does not end with ETX or ETB before its checksum")
    body = raw[1:-4]
    if raw[-4:-2].upper() != checksum(body):
        raise FrameError(
            f"bad checksum {raw[-4:-2]!r}, computed {checksum(body)!r}",
        )
    digit = raw[1]
    if not 0x30 <= digit <= 0x37:
        raise FrameError(f"frame number {chr(digit)!r} is not a digit 0-7")
    text = raw[2:-5]
    if len(text.translate(None, _RESTRICTED_BYTES)) != len(text):
        raise FrameError("frame text carries a restricted control character")
    return Frame(number=digit - 0x30, text=text, last=terminator == ETX)
