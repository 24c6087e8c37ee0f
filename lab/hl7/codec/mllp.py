"""MLLP framing (HL7 v2.5.1 appendix C, Minimal Lower Layer Protocol), without I/O.

A block is 0x0B (VT), the message, 0x1C (FS) 0x0D (CR). Reads from a socket split and merge
blocks arbitrarily, so the decoder keeps a buffer, in the style of h11:

    decoder.receive_data(chunk)          # b"" when the peer closed the connection
    while (message := decoder.next_message()) not in (NEED_DATA, CLOSED):
        ...

Bytes outside a block are discarded and counted (`discarded_bytes`). A block interrupted by a
new 0x0B, or whose 0x1C is not followed by 0x0D, is discarded whole and counted
(`discarded_blocks`) rather than delivered: a lost end byte must never glue two messages into
one. A block longer than `max_message_size` raises MllpFramingError; the caller closes the
connection (there is no way to find the next block start in an endless block).
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from lab.hl7.codec.errors import LocalProtocolError, MllpFramingError

START_BLOCK: Final = b"\x0b"
END_BLOCK: Final = b"\x1c"
CARRIAGE_RETURN: Final = b"\x0d"
DEFAULT_MAX_MESSAGE_SIZE: Final = 1024 * 1024


class Signal(Enum):
    NEED_DATA = "need data"
    """Nothing complete yet: receive more bytes."""
    CLOSED = "closed"
    """The peer closed the connection and every complete message has been returned."""


NEED_DATA: Final = Signal.NEED_DATA
CLOSED: Final = Signal.CLOSED


def frame(message: bytes) -> bytes:
    """One MLLP block around an encoded message."""
    if START_BLOCK in message or END_BLOCK in message:
        # The ER7 codec escapes these; raw ones here mean the caller framed unencoded bytes.
        raise LocalProtocolError("a message holding 0x0B or 0x1C cannot be framed in MLLP")
    return START_BLOCK + message + END_BLOCK + CARRIAGE_RETURN


class MllpDecoder:
    """Turns a byte stream into the messages inside its MLLP blocks."""

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        self.max_message_size = max_message_size
        self.discarded_bytes = 0
        self.discarded_blocks = 0
        self._buffer = bytearray()
        self._in_block = False  # the buffer starts with 0x0B
        self._scanned = 0  # bytes of the buffer already searched for an end (no rescans)
        self._closed = False

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the peer; b"" means the peer closed the connection."""
        if self._closed:
            if data:
                raise MllpFramingError("data received after the connection was closed")
            return
        if not data:
            self._closed = True
            return
        self._buffer += data

    @property
    def pending_bytes(self) -> int:
        """Bytes held for a block not yet complete."""
        return len(self._buffer)

    def next_message(self) -> bytes | Signal:
        """The next complete message, NEED_DATA or CLOSED."""
        while True:
            buffer = self._buffer
            if not self._in_block:
                start = buffer.find(START_BLOCK)
                if start == -1:
                    self.discarded_bytes += len(buffer)
                    buffer.clear()
                    return self._when_empty()
                if start:
                    self.discarded_bytes += start
                    del buffer[:start]
                self._in_block = True
                self._scanned = 1
            end = buffer.find(END_BLOCK, self._scanned)
            restart = buffer.find(START_BLOCK, self._scanned, len(buffer) if end == -1 else end)
            if restart != -1:
                # A new block began before this one ended: the end bytes were lost.
                self._discard_block(restart)
                continue
            if end == -1:
                self._scanned = len(buffer)
                if len(buffer) - 1 > self.max_message_size:
                    raise MllpFramingError(
                        f"MLLP block longer than {self.max_message_size} bytes without an end"
                    )
                return self._when_empty()
            if end + 1 == len(buffer):
                self._scanned = end  # 0x1C seen, its 0x0D not yet
                return self._when_empty()
            if buffer[end + 1 : end + 2] != CARRIAGE_RETURN:
                self._discard_block(end + 1)
                continue
            if end - 1 > self.max_message_size:
                raise MllpFramingError(f"MLLP block longer than {self.max_message_size} bytes")
            message = bytes(buffer[1:end])
            del buffer[: end + 2]
            self._in_block = False
            return message

    def _discard_block(self, upto: int) -> None:
        self.discarded_blocks += 1
        self.discarded_bytes += upto
        del self._buffer[:upto]
        self._in_block = False

    def _when_empty(self) -> Signal:
        if not self._closed:
            return NEED_DATA
        if self._in_block and self._buffer:
            partial = len(self._buffer)
            self._buffer.clear()
            self._in_block = False
            self.discarded_blocks += 1
            self.discarded_bytes += partial
            raise MllpFramingError(f"connection closed inside an MLLP block ({partial} bytes)")
        return CLOSED
