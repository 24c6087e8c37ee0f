"""Serial lines on pseudo-terminals: the analyser's cable without an analyser.

`PtyLine` (os.openpty): the lab opens the slave end as its serial port, the virtual analyser
talks over the master end through `PtyChannel`. `socat_pair` gives two slave ends joined by
socat, for a test where both sides open a real serial port through pyserial.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PtyLine:
    """A pseudo-terminal: the lab opens `path` as its serial port; the analyser talks over the
    master end (`channel()`). Both ends are raw: in cooked mode the terminal driver turns CR
    into LF and takes ETX, EOT, NAK and ETB as control keys. Our copy of the slave end stays
    open, so the master never reads EIO while the lab reopens the port."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        os.set_blocking(self.master, False)

    def channel(self) -> PtyChannel:
        """A `ByteChannel` over the master end; call it inside the event loop that uses it."""
        return PtyChannel(self.master, self.path)

    def close(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class PtyChannel:
    """A `ByteChannel` (instruments.transports) over the master end of a pseudo-terminal."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self._peer = name
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._loop.add_reader(fd, self._readable)
        self._closed = False

    @property
    def peer(self) -> str:
        return self._peer

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._queue.put_nowait(data)

    async def read(self) -> bytes:
        return await self._queue.get()

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                await asyncio.sleep(0.002)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self.fd)
            self._queue.put_nowait(b"")


def socat_available() -> bool:
    return shutil.which("socat") is not None


@contextmanager
def socat_pair(folder: Path, *, wait: float = 5.0) -> Iterator[tuple[Path, Path]]:
    """Two raw pseudo-terminals joined by socat, as links `folder/lis` and `folder/analyser`
    (what one end writes, the other reads); socat is stopped when the block ends."""
    host_end, analyser_end = folder / "lis", folder / "analyser"
    executable = shutil.which("socat")
    if executable is None:
        raise FileNotFoundError("socat is not installed (make system-deps)")
    socat = subprocess.Popen(  # noqa: S603 - a fixed argument list
        [
            executable,
            f"pty,raw,echo=0,link={host_end}",
            f"pty,raw,echo=0,link={analyser_end}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + wait
        while not (host_end.exists() and analyser_end.exists()) and time.monotonic() < deadline:
            time.sleep(0.02)
        yield host_end, analyser_end
    finally:
        socat.terminate()
        socat.wait(5)
