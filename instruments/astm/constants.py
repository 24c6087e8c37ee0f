"""Control characters, limits and timers of ASTM E1381 (CLSI LIS1-A) and E1394 (CLSI LIS2-A2).

Sources: CLSI LIS1-A (E1381-02) sections 6 (establishment, transfer, termination), 6.5 (timeouts)
and 8.2 (restricted characters).
"""

from __future__ import annotations

from typing import Final

STX: Final = 0x02
ETX: Final = 0x03
EOT: Final = 0x04
ENQ: Final = 0x05
ACK: Final = 0x06
LF: Final = 0x0A
CR: Final = 0x0D
NAK: Final = 0x15
ETB: Final = 0x17

STX_BYTE: Final = b"\x02"
EOT_BYTE: Final = b"\x04"
ENQ_BYTE: Final = b"\x05"
ACK_BYTE: Final = b"\x06"
NAK_BYTE: Final = b"\x15"
CRLF: Final = b"\r\n"

# LIS1-A 8.2: characters a frame's text must not carry (SOH STX ETX EOT ENQ ACK DLE NAK SYN ETB,
# DC1-DC4) and LF; CR is allowed only as the record terminator.
RESTRICTED_IN_TEXT: Final = frozenset(
    {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x0A}
)

# LIS1-A 6.3.1: at most 240 characters of text per frame (a frame is then at most 247 bytes).
MAX_FRAME_TEXT: Final = 240
# FN runs 1..7 then wraps to 0; the first frame of every transfer phase is 1.
FIRST_FRAME_NUMBER: Final = 1
FRAME_NUMBER_MODULUS: Final = 8
# LIS1-A 6.3.5: a frame is sent at most six times in all, then the sender aborts.
MAX_FRAME_ATTEMPTS: Final = 6

# LIS1-A 6.5 timers, in seconds.
SENDER_REPLY_TIMEOUT: Final = 15.0  # sender waits this long for any reply to ENQ or a frame
RECEIVER_FRAME_TIMEOUT: Final = 30.0  # receiver waits this long for the next frame or EOT
BUSY_RETRY_DELAY: Final = 10.0  # after NAK to ENQ (receiver busy): wait at least 10 s
CONTENTION_INSTRUMENT_DELAY: Final = 1.0  # instrument re-bids at least 1 s after contention
CONTENTION_HOST_WAIT: Final = 20.0  # host waits up to 20 s for the instrument's bid (verify)
INTERRUPT_NO_BID: Final = 15.0  # after a receiver interrupt: no new bid for 15 s
# After a sender abort (no reply, six failed attempts) the standard gives no figure; we wait as
# long as after a busy reply so a failing receiver is not hammered.
ABORT_RETRY_DELAY: Final = BUSY_RETRY_DELAY
