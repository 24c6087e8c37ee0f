"""ASTM over an RS-232 line through pyserial (LIS1-A 5: the physical layer).

pyserial has no asyncio interface, so a reader thread per open port does blocking reads with a
short timeout and hands what it read to the event loop; writes go through a worker thread. The
port is any pyserial name or URL (`/dev/ttyUSB0`, a pseudo-terminal, `loop://`, `socket://`).
A port that cannot be opened, or that fails, is opened again with backoff; it never affects
another instrument.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable

import serial

from instruments.config import SerialSettings

log = logging.getLogger(__name__)

_PARITY = {
    "N": serial.PARITY_NONE,
    "E": serial.PARITY_EVEN,
    "O": serial.PARITY_ODD,
    "M": serial.PARITY_MARK,
    "S": serial.PARITY_SPACE,
}
_STOPBITS = {
    1.0: serial.STOPBITS_ONE,
    1.5: serial.STOPBITS_ONE_POINT_FIVE,
    2.0: serial.STOPBITS_TWO,
}

OnLine = Callable[["SerialChannel"], Awaitable[None]]


def open_port(settings: SerialSettings) -> serial.Serial:
    port: serial.Serial = serial.serial_for_url(
        settings.port,
        baudrate=settings.baudrate,
        bytesize=settings.bytesize,
        parity=_PARITY[settings.parity],
        stopbits=_STOPBITS[float(settings.stopbits)],
        xonxoff=settings.flow_control == "xonxoff",
        rtscts=settings.flow_control == "rtscts",
        dsrdtr=settings.flow_control == "dsrdtr",
        timeout=0.05,
        write_timeout=10,
    )
    return port


class SerialChannel:
    """A `ByteChannel` over an open pyserial port."""

    def __init__(self, port: serial.Serial, name: str) -> None:
        self.port = port
        self._peer = name
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._stop = threading.Event()
        self.error = ""
        self._reader = threading.Thread(
            target=self._read_forever, name=f"serial {name}", daemon=True
        )
        self._reader.start()

    @property
    def peer(self) -> str:
        return self._peer

    def _read_forever(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.port.read(max(1, self.port.in_waiting))
            except (serial.SerialException, OSError, TypeError, ValueError) as error:
                # TypeError/ValueError: pyserial reading a port closed under it
                self.error = str(error)
                break
            if data:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, data)
        with contextlib.suppress(RuntimeError):  # the loop may be closed at shutdown
            self._loop.call_soon_threadsafe(self._queue.put_nowait, b"")

    async def read(self) -> bytes:
        return await self._queue.get()

    async def write(self, data: bytes) -> None:
        def write_all() -> None:
            self.port.write(data)
            self.port.flush()

        try:
            await asyncio.to_thread(write_all)
        except (serial.SerialException, OSError) as error:
            self.error = str(error)
            raise ConnectionError(f"cannot write to {self._peer}: {error}") from error

    async def close(self) -> None:
        self._stop.set()
        await asyncio.to_thread(self._reader.join, 1.0)
        with contextlib.suppress(serial.SerialException, OSError):
            self.port.close()


async def open_channel(settings: SerialSettings) -> SerialChannel:
    port = await asyncio.to_thread(open_port, settings)
    return SerialChannel(port, settings.port)


async def run_forever(
    settings: SerialSettings,
    on_line: OnLine,
    *,
    on_wait: Callable[[float, str], None] | None = None,
) -> None:
    """Open the port and run the line; if it cannot be opened or fails, wait and open again."""
    delay = settings.reopen_initial
    while True:
        try:
            channel = await open_channel(settings)
        except (serial.SerialException, OSError, ValueError) as error:
            reason = f"cannot open {settings.port}: {error}"
        else:
            delay = settings.reopen_initial
            try:
                await on_line(channel)
                reason = channel.error or f"{settings.port} closed"
            except Exception as error:
                log.exception("serial line %s failed", settings.port)
                reason = f"line failed: {error}"
            finally:
                await channel.close()
        if on_wait is not None:
            on_wait(delay, reason)
        await asyncio.sleep(delay)
        delay = min(settings.reopen_max, delay * 2)
