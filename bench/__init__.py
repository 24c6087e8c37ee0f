"""The benchmarks (`make bench`, `python -m bench TOPIC`): each on a scratch database of its own.

The server is `LAB_BENCH_DATABASE_URL`, `LAB_TEST_DATABASE_URL` or postgres@127.0.0.1:5432;
`BENCH_SCALE` (default 1) shrinks or grows every size for a quick or a long run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from testkit.database import scratch_database, server_url

SERVER = server_url("LAB_BENCH_DATABASE_URL")
SCALE = float(os.environ.get("BENCH_SCALE", "1"))


def scaled(n: int, least: int) -> int:
    """`n` at this run's scale, and never below `least`."""
    return max(int(n * SCALE), least)


@contextmanager
def bench_database(label: str) -> Iterator[str]:
    """A fresh database (migrated, demo catalog and users), dropped when the block ends."""
    with scratch_database(SERVER, f"bench_{label}") as database:
        yield database.url
