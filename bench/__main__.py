"""`make bench`: run every benchmark module in this folder and print its figures.

Each module is named `bench_<topic>.py` and has a `main() -> None` that prints what it measured
and what the figures mean. `python -m bench astm hl7` runs only the named topics.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    folder = Path(__file__).parent
    topics = sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules([str(folder)])
        if m.name.startswith("bench_")
    )
    wanted = argv or topics
    for topic in wanted:
        if topic not in topics:
            print(f"unknown benchmark {topic!r}; known: {', '.join(topics)}")
            return 2
        module = importlib.import_module(f"bench.bench_{topic}")
        print(f"\n=== {topic} ===", flush=True)
        started = time.perf_counter()
        module.main()
        print(f"--- {topic} took {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
