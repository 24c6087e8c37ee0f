"""Drill 3: the record's receiver is down for a long stretch; afterwards every result arrives
once, and in order per patient.

Orders for a few patients (several orders each) come in over MLLP, results over ASTM, and the
lab physician verifies them through the API while the receiver refuses connections. The
dispatcher fails, backs off (2 s, 4 s, 8 s ...) and tries again; when the receiver is back,
every ORU^R01 is filed once, and each patient's ORUs arrive in the order they were queued.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path

from drills.common import (
    TCP,
    DrillResult,
    OrderLoad,
    ResultLoad,
    accessions_of,
    fresh_database,
    rows,
)
from testkit.api import ApiClient
from testkit.orders import oml_o21
from testkit.patients import synthetic_patients
from testkit.process import running_lab
from testkit.record import FakeRecord

# This drill's outbound messages: those of its own orders.
_MINE = (
    "SELECT m.control_id, m.patient_id, m.id FROM hl7_message m JOIN lab_order o "
    "ON o.id = m.order_id WHERE m.direction = 'out' AND o.placer_order_number = ANY(:p)"
)


async def _drill(
    url: str, folder: Path, *, patients: int, per_patient: int, down: float
) -> DrillResult:
    orders = OrderLoad(label=f"R{int(time.time()) % 100000}")
    people = synthetic_patients(patients, seed=7)
    placers: list[str] = []
    for round_ in range(per_patient):
        for number, person in enumerate(people):
            placer = f"{orders.label}{number:03d}{round_:02d}"
            orders.messages[placer] = oml_o21(
                control_id=placer, placer=placer, patient=person, tests=["HB"]
            )
            placers.append(placer)
    results = ResultLoad()
    receiver = FakeRecord(log_path=folder / "record.log")
    async with running_lab(
        url,
        folder,
        analysers=[TCP],
        record=receiver,
        extra_env={"LAB_RELEASE_HOLD_MINUTES": "0"},
    ) as lab:
        port = receiver.port
        await receiver.stop()  # the record goes away before any result is verified
        went_down = time.monotonic()
        await orders.send(lab.mllp_port, placers)
        by_placer = accessions_of(url, placers)
        await results.send(lab.astm_port, [by_placer[p] for p in placers])
        lege = ApiClient(lab.process.base, lab.token("lege"))
        for placer in placers:  # verified in order: round by round, patient by patient
            await asyncio.to_thread(lege.verify_specimen, by_placer[placer])
        await asyncio.sleep(max(0.0, down - (time.monotonic() - went_down)))
        failures = rows(url, _MINE + " AND m.attempts > 0", p=placers)
        await receiver.start(port)
        deadline = time.monotonic() + 150
        while (
            len({m.placer for m in receiver.filed.values()} & set(placers)) < len(placers)
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.5)
        waited = time.monotonic() - went_down
        queued = rows(url, _MINE + " ORDER BY m.id", p=placers)

    problems: list[str] = []
    mine = set(placers)  # a shared database may hold other work for the same dispatcher
    filed = {c: m for c, m in receiver.filed.items() if m.placer in mine}
    received = [m for m in receiver.received if m.placer in mine]
    if len(filed) != len(placers):
        problems.append(f"{len(filed)} of {len(placers)} ORUs arrived")
    repeats = len(received) - len(filed)
    if repeats:
        problems.append(f"{repeats} ORUs arrived more than once")
    queued_order = {str(c): i for i, (c, _, _) in enumerate(queued)}
    if len(queued) != len(placers):
        problems.append(f"{len(queued)} ORUs queued for {len(placers)} verified orders")
    patient_of = {str(c): p for c, p, _ in queued}
    arrivals: dict[object, list[int]] = defaultdict(list)
    for message in received:
        arrivals[patient_of.get(message.control_id)].append(queued_order[message.control_id])
    out_of_order = [p for p, seq in arrivals.items() if seq != sorted(seq)]
    if out_of_order:
        problems.append(f"{len(out_of_order)} patients got ORUs out of order")
    values = {
        placer: value
        for placer, accession in by_placer.items()
        for a, value in results.accepted.items()
        if a == accession
    }
    wrong = [
        m.placer
        for m in filed.values()
        if [float(o[1]) for o in m.observations] != [float(values[m.placer])]
    ]
    if wrong:
        problems.append(f"{len(wrong)} ORUs carry other values than the analyser sent")
    summary = (
        f"receiver down {down:.0f} s ({len(failures)} ORUs had failed tries): {len(filed)}/"
        f"{len(placers)} ORUs for {patients} patients filed once each, in order per patient, "
        f"all in by {waited:.0f} s"
    )
    return DrillResult.judged("receiver-down", summary, problems)


def run(
    folder: Path, *, patients: int = 8, per_patient: int = 4, down: float = 60.0
) -> DrillResult:
    with fresh_database("receiver") as url:
        return asyncio.run(
            _drill(url, folder, patients=patients, per_patient=per_patient, down=down)
        )
