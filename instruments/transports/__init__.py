"""Transports: the only I/O of the analyser side (TCP through asyncio, serial through pyserial).

Each gives a `ByteChannel` (read what arrived, write bytes, close) to a `LineDriver`, which
feeds the link-layer `Connection` with those bytes and the monotonic time and ticks its timers.
"""

from __future__ import annotations

from instruments.transports.base import ByteChannel, LineDriver

__all__ = ["ByteChannel", "LineDriver"]
