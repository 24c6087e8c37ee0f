"""The raw traffic archive: every byte in and out of every analyser line, kept before it is read.

Append-only files under `LAB_DATA_DIR/archive/<instrument>/<YYYY-MM-DD>.astm` (UTC day), in the
transcript format of `instruments.astm.transcript` (``>`` from the analyser, ``<`` from us,
``@`` seconds since the epoch), so an archive file is itself a capture that
`lab instrument replay` can feed through the decoder again. Each piece is written, flushed and
fsynced before the caller feeds it to the link layer (docs/architecture.md, rule 7).

Why files and not a table: the archive must keep working when the database does not (a database
outage is exactly when the raw bytes matter, and the line is then NAKed so the analyser sends
again), an fdatasync costs about 0.3 ms here against a PostgreSQL commit of about 0.6 ms that
would compete with the results' own transactions, and a file is directly replayable.

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
from typing import IO

from instruments.astm.link import Role
from instruments.astm.transcript import encode_payload


class ArchiveFull(Exception):
    """The analyser's archive quota for the day is used up; the bytes were not kept."""


class TrafficArchive:
    """Durable, append-only capture of analyser traffic; safe to share between instruments."""

    def __init__(self, directory: Path, *, daily_quota_bytes: int | None = None) -> None:
        self.directory = directory
        self.daily_quota_bytes = daily_quota_bytes
        self._files: dict[str, tuple[str, IO[str]]] = {}
        self._sizes: dict[str, int] = {}  # bytes in the instrument's file of the day
        self._lock = threading.Lock()

    async def keep(self, instrument: str, writer: Role, data: bytes) -> None:
        """Store `data` durably; returns once it is on disk."""
        if data:
            await asyncio.to_thread(self.keep_now, instrument, writer, data)

    def keep_now(self, instrument: str, writer: Role, data: bytes, at: float | None = None) -> None:
        moment = time.time() if at is None else at
        mark = ">" if writer is Role.INSTRUMENT else "<"
        text = f"@ {moment:.6f}\n{mark} {encode_payload(data)}\n"
        with self._lock:
            handle = self._file(instrument, moment)
            size = self._sizes.get(instrument, 0) + len(text)
            if self.daily_quota_bytes is not None and size > self.daily_quota_bytes:
                quota = self.daily_quota_bytes
                raise ArchiveFull(f"archive quota of {quota} bytes a day reached for {instrument}")
            self._sizes[instrument] = size
            handle.write(text)
            handle.flush()
            os.fdatasync(handle.fileno())

    def path_for(self, instrument: str, moment: float) -> Path:
        day = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d")
        return self.directory / _safe(instrument) / f"{day}.astm"

    def _file(self, instrument: str, moment: float) -> IO[str]:
        path = self.path_for(instrument, moment)
        current = self._files.get(instrument)
        if current is not None and current[0] == str(path):
            return current[1]
        if current is not None:
            current[1].close()
        new = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a", encoding="ascii", newline="\n")
        if new:
            handle.write(f"# raw ASTM traffic of analyser {instrument!r}; times are Unix seconds\n")
            handle.flush()
            os.fsync(handle.fileno())
            _fsync_directory(path.parent)  # the new file's name must survive a crash too
        self._files[instrument] = (str(path), handle)
        self._sizes[instrument] = path.stat().st_size
        return handle

    def close(self) -> None:
        with self._lock:
            for _, handle in self._files.values():
                handle.close()
            self._files.clear()


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "_"


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
