"""HL7 codec speed: our ER7 parser and ORU^R01 builder against python-hl7 and hl7apy.

Same messages, same run. Parse: an ORU^R01 with 10 OBX (built by `lab.hl7.codec.oru`) and the
three-test OML^O21 sample, from bytes. Our parser splits segments and fields and checks
structure and escapes up front, and splits components on access; "parse + read all" also reads
every component of every field, which is what python-hl7 does eagerly. Build: the same ORU^R01
from values to bytes, ours against hl7apy (its segment/group objects, then `to_er7()`).
Aims (brief): parse >= 5x python-hl7 and >= 100x hl7apy; build >= 50x hl7apy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import hl7
from hl7apy.core import Message as HapyMessage
from hl7apy.parser import parse_message as hapy_parse

from lab.hl7.codec.er7 import Message, parse_message
from lab.hl7.codec.oru import build_oru
from testkit.results import ten_results

OML = Path(__file__).parent.parent / "tests" / "data" / "hl7" / "oml_o21_three_tests.hl7"


def per_op(operation: Callable[[], object], *, seconds: float = 0.6) -> float:
    """Seconds per call: best of three timed batches sized to about `seconds` each."""
    operation()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < 0.05:
        operation()
        count += 1
    batch = max(1, int(count * seconds / 0.05 / 3))
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(batch):
            operation()
        best = min(best, (time.perf_counter() - started) / batch)
    return best


def read_everything(message: Message) -> int:
    leaves = 0
    for segment in message:
        for position in range(1, len(segment) + 1):
            if segment.name == "MSH" and position <= 2:
                continue
            for repetition in segment.field(position).tree():
                for component in repetition:
                    leaves += len(component)
    return leaves


def parse_and_read_everything(data: bytes) -> int:
    return read_everything(parse_message(data))


def hapy_build(message: Message) -> str:
    """hl7apy builds the same ORU^R01: its groups and segments, fields set from ER7 text."""
    built = HapyMessage("ORU_R01", version="2.5.1")
    for position in range(3, len(message.header) + 1):
        wire = message.header.wire(position)
        if wire:
            setattr(built.msh, f"msh_{position}", wire)
    result = built.add_group("ORU_R01_PATIENT_RESULT")
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    parent = order
    for segment in message.segments[1:]:
        if segment.name == "PID":
            target = result.add_group("ORU_R01_PATIENT").add_segment("PID")
        elif segment.name == "OBX":
            parent = order.add_group("ORU_R01_OBSERVATION")
            target = parent.add_segment("OBX")
        elif segment.name in ("ORC", "OBR"):
            target = order.add_segment(segment.name)
        else:  # NTE under the OBR or under the latest OBX
            target = parent.add_segment(segment.name)
        name = segment.name.lower()
        for position in range(1, len(segment) + 1):
            wire = segment.wire(position)
            if wire:
                setattr(target, f"{name}_{position}", wire)
    return str(built.to_er7())


def line(label: str, seconds: float, explanation: str) -> None:
    print(f"{label:<44} {seconds * 1e6:>10.1f} us/op {1 / seconds:>10.0f} ops/s  {explanation}")


def main() -> None:
    report = ten_results()
    oru = build_oru(report)
    oru_bytes = oru.encode()
    oml_bytes = OML.read_bytes()
    print(f"ORU^R01 with 10 OBX: {len(oru_bytes)} bytes; OML^O21 (3 tests): {len(oml_bytes)} bytes")
    assert hapy_parse(hapy_build(oru).replace("\n", "\r")).to_er7()  # the hl7apy build is valid

    for title, data in (("ORU^R01 10 OBX", oru_bytes), ("OML^O21 3 tests", oml_bytes)):
        text = data.decode("utf-8")
        ours = per_op(partial(parse_message, data))
        ours_all = per_op(partial(parse_and_read_everything, data))
        python_hl7 = per_op(partial(hl7.parse, text))
        hapy = per_op(partial(hapy_parse, text, find_groups=True), seconds=1.5)
        line(f"parse {title}: lab.hl7", ours, "split + structure/escape checks")
        line(f"parse {title}: lab.hl7 + read all", ours_all, "and every component unescaped")
        line(f"parse {title}: python-hl7 hl7.parse", python_hl7, "eager nested containers")
        line(f"parse {title}: hl7apy parse_message", hapy, "find_groups=True, no validation")
        print(
            f"  ratios: python-hl7/ours {python_hl7 / ours:.1f}x"
            f" (read all {python_hl7 / ours_all:.1f}x);"
            f" hl7apy/ours {hapy / ours:.0f}x (read all {hapy / ours_all:.0f}x)"
        )

    build_ours = per_op(lambda: build_oru(report).encode())
    build_hapy = per_op(lambda: hapy_build(oru).encode("utf-8"), seconds=1.5)
    line("build ORU^R01 10 OBX: lab.hl7 build_oru", build_ours, "values to UTF-8 bytes")
    line("build ORU^R01 10 OBX: hl7apy", build_hapy, "groups/segments, fields from ER7, to_er7")
    print(f"  ratio: hl7apy/ours {build_hapy / build_ours:.0f}x")


if __name__ == "__main__":
    main()
