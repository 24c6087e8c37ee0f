"""The raw traffic archive: every byte in and out of every analyser line, kept before it is read.

Append-only files under `LAB_DATA_DIR/archive/<instrument>/<YYYY-MM-DD>.astm` (UTC day), in the
transcript format of `instruments.astm.transcript` (``>`` from the analyser, ``<`` from us,
``@`` seconds since the epoch), so an archive file is itself a capture that
`lab instrument replay` can feed through the decoder again.

Two steps keep every byte (docs/architecture.md, rule 7):
- `keep_now(..., durable=False)`: each piece is appended to the file with one `write` system
  call (no buffer of ours in between) before the caller feeds it to the link layer or writes it
  to the line. From then on a crash of the service loses none of it (the kernel holds it), and
  readers of the file (the turnaround indexer) see it.
- `sync_now`: before a completed message is parsed into records and stored (and so before the ACK
  that tells the analyser it was delivered), the analyser's file is forced to disk
  (fdatasync): whatever the database commits has its raw bytes on disk first. Only a power loss
  between the two steps can lose bytes, and then only bytes of a message that was neither
  stored nor acknowledged, which the analyser sends again.
One fdatasync per message instead of one per frame and per ACK (about 20 for a message of nine
records): at 0.3 to 0.8 ms each, waited for one after the other, they were most of the time an
analyser waited for its ACKs.

Why files and not a table: the archive must keep working when the database does not (a database
outage is exactly when the raw bytes matter, and the line is then NAKed so the analyser sends
again), an fdatasync costs less than a PostgreSQL commit that would compete with the results'
own transactions, and a file is directly replayable.

Quota: each analyser may write at most `daily_quota_bytes` a day (`LAB_ASTM_ARCHIVE_DAILY_MB`).
A line that would go past it gets `ArchiveFull` instead of a write: the bytes are neither kept
nor read, the runner closes the line and raises an alarm. A peer streaming garbage therefore
cannot fill the disk, and nothing is ever interpreted without its archive copy.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from instruments.astm.link import Role
from instruments.astm.transcript import encode_payload


class ArchiveFull(Exception):
    """The analyser's archive quota for the day is used up; the bytes were not kept."""


class TrafficArchive:
    """Durable, append-only capture of analyser traffic; safe to share between instruments."""

    def __init__(self, directory: Path, *, daily_quota_bytes: int | None = None) -> None:
        self.directory = directory
        self.daily_quota_bytes = daily_quota_bytes
        self._files: dict[str, tuple[int, int]] = {}  # instrument: (UTC day, its descriptor)
        self._sizes: dict[str, int] = {}  # bytes in the instrument's file of the day
        self._dirty: set[str] = set()  # instruments with bytes not yet forced to disk
        self._lock = threading.Lock()

    async def sync(self, instrument: str) -> None:
        """Force what was kept for `instrument` to disk; returns once it is there."""
        await asyncio.to_thread(self.sync_now, instrument)

    def sync_now(self, instrument: str) -> None:
        """`sync` on the caller's thread (the analyser runner calls it in its worker thread,
        just before the message's transaction). A no-op when nothing was kept since the last."""
        with self._lock:
            if instrument not in self._dirty:
                return
            self._dirty.discard(instrument)
            current = self._files.get(instrument)
            if current is None:
                return
            # A duplicate of the descriptor: the disk flush runs without the lock (other lines
            # keep writing meanwhile), and a day's file closed meanwhile stays valid here.
            descriptor = os.dup(current[1])
        try:
            os.fdatasync(descriptor)
        except BaseException:
            with self._lock:
                self._dirty.add(instrument)  # not on disk: the next sync tries again
            raise
        finally:
            os.close(descriptor)

    def keep_now(
        self,
        instrument: str,
        writer: Role,
        data: bytes,
        at: float | None = None,
        *,
        durable: bool = True,
    ) -> None:
        """Append `data`; with `durable` (the default), forced to disk before returning.

        One `write` system call per piece, straight to the file's descriptor (no buffer of our
        own): when it returns, the operating system holds the piece."""
        moment = time.time() if at is None else at
        mark = b"> " if writer is Role.INSTRUMENT else b"< "
        payload = _SINGLE_BYTES.get(data) if len(data) == 1 else None
        if payload is None:
            payload = encode_payload(data).encode("ascii")
        entry = b"@ %.6f\n%s%s\n" % (moment, mark, payload)
        with self._lock:
            descriptor = self._file(instrument, moment)
            size = self._sizes.get(instrument, 0) + len(entry)
            if self.daily_quota_bytes is not None and size > self.daily_quota_bytes:
                quota = self.daily_quota_bytes
                raise ArchiveFull(f"archive quota of {quota} bytes a day reached for {instrument}")
            self._sizes[instrument] = size
            _write_all(descriptor, entry)
            if durable:
                os.fdatasync(descriptor)
                self._dirty.discard(instrument)
            else:
                self._dirty.add(instrument)

    def path_for(self, instrument: str, moment: float) -> Path:
        day = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d")
        return self.directory / _safe(instrument) / f"{day}.astm"

    def _file(self, instrument: str, moment: float) -> int:
        """The descriptor of the instrument's file for the UTC day of `moment` (opened in
        append mode; the day that ended is forced to disk and closed)."""
        day = int(moment // 86400)  # the UTC day: the open file serves it without a path
        current = self._files.get(instrument)
        if current is not None and current[0] == day:
            return current[1]
        path = self.path_for(instrument, moment)
        if current is not None:
            os.fdatasync(current[1])  # the day that ends is on disk whole
            os.close(current[1])
            del self._files[instrument]
        new = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        if new:
            header = f"# raw ASTM traffic of analyser {instrument!r}; times are Unix seconds\n"
            _write_all(descriptor, header.encode("ascii", "backslashreplace"))
            os.fsync(descriptor)
            _fsync_directory(path.parent)  # the new file's name must survive a crash too
        self._files[instrument] = (day, descriptor)
        self._sizes[instrument] = os.fstat(descriptor).st_size
        return descriptor

    def close(self) -> None:
        with self._lock:
            for _, descriptor in self._files.values():
                os.fdatasync(descriptor)
                os.close(descriptor)
            self._dirty.clear()
            self._files.clear()


#: The payload text of each one-byte piece (ACK, NAK, ENQ, EOT: half of a line's pieces).
_SINGLE_BYTES = {
    bytes((byte,)): encode_payload(bytes((byte,))).encode("ascii") for byte in range(256)
}


def _write_all(descriptor: int, data: bytes) -> None:
    """Write `data` whole (a regular file takes it in one call; a short write is continued)."""
    while data:
        written = os.write(descriptor, data)
        data = data[written:]


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "_"


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
