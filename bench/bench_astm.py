"""ASTM benchmark: our link layer and record codec, beside astm-2025's decoder in the same run.

Run with `.venv/bin/python -m bench astm`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from astm import codec as astm_codec

from instruments.astm.constants import ENQ_BYTE, EOT_BYTE
from instruments.astm.events import MessageReceived, Sentinel
from instruments.astm.frames import build_frames
from instruments.astm.link import Connection, Role
from instruments.astm.record_codec import parse_records

TESTS = ["HB", "LPK", "TPK", "NA", "K", "KREA", "CRP", "GLUK", "ALAT", "ASAT", "ALP", "GT",
         "BILI", "ALB", "CA", "MG"]  # fmt: skip


def realistic_message() -> list[bytes]:
    """H, P, O and 16 R records and L: one specimen's chemistry and haematology results."""
    records = [
        b"H|\\^&|||GenericAnalyser^1.0^SN1234|||||LIS||P|LIS2-A2|20260127081500",
        "P|1||12345678901||Bjørnstad^Åse^M||19800115|F".encode("latin-1"),
        b"O|1|LAB0001234||"
        + b"\\".join(b"^^^" + t.encode() for t in TESTS)
        + b"|R|20260127080000|20260127073000||||N||||SERUM||||||||||F",
    ]
    for number, test in enumerate(TESTS, start=1):
        records.append(
            f"R|{number}|^^^{test}|{number * 1.7:.1f}|mmol/L|1.0 to 9.9|N||F||bio1^lege2|"
            f"20260127081000|20260127081400|GEN1".encode()
        )
    records.append(b"L|1|N")
    return records


def best_rate(work: Callable[[], int], *, repeat: int = 5, seconds: float = 0.4) -> float:
    """Items per second: the best of `repeat` runs of `work` for about `seconds` each."""
    best = 0.0
    for _ in range(repeat):
        items = 0
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            items += work()
        best = max(best, items / elapsed)
    return best


def main() -> None:
    records = realistic_message()
    frames = build_frames(records)
    session = ENQ_BYTE + b"".join(frames) + EOT_BYTE
    chunks = [session[i : i + 512] for i in range(0, len(session), 512)]

    def receive_session() -> int:
        host = Connection(role=Role.HOST)
        for chunk in chunks:
            host.receive_data(chunk, 0.0)
            while not isinstance(event := host.next_event(), Sentinel):
                if isinstance(event, MessageReceived) and event.needs_confirmation:
                    host.confirm_received(0.0)
            host.data_to_send()
        return len(frames)

    frame_rate = best_rate(receive_session)
    print(
        f"link layer: {frame_rate:,.0f} frames/s decoded "
        f"({len(records)}-record message, {len(frames)} frames, {len(session)} bytes "
        f"fed in 512-byte reads, checksum, FN, ACKs and reassembly included)"
    )

    def ours() -> int:
        parse_records(records)
        return len(records)

    def theirs() -> int:
        for raw in records:
            astm_codec.decode_record(raw, "latin-1")
        return len(records)

    our_rate = best_rate(ours)
    their_rate = best_rate(theirs)
    print(
        f"records, ours: {our_rate:,.0f} records/s parsed to typed records "
        "(fields split into repeats and components, escapes undone)"
    )
    print(
        f"records, astm-2025 decode_record: {their_rate:,.0f} records/s "
        "(split into nested lists, no escapes, no types)"
    )
    print(f"ratio ours / astm-2025: {our_rate / their_rate:.2f}x (aim: at least 2x)")
