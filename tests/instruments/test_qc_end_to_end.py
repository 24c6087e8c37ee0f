"""End to end over ASTM (a real TCP line, the lab as server): a 1-3s control locks NA on the
analyser, the next patient NA waits with `qc`, an in-control run of both levels unlocks, and the
next patient NA no longer waits for QC; the NA measured while locked stays held.

(This test's database has no active rule set, so nothing is autoverified and it stops at "no
`qc` hold"; that the next NA is then *released* by autoverification is tested against a running
`lab serve` with the demo rules active in tests/results/test_judgement_end_to_end.py.)"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from instruments.astm.records import Record, TerminatorRecord
from instruments.profiles import SpecimenOrder, get_profile
from instruments.profiles.base import MeasuredResult
from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp
from lab.qc import service as qc
from lab.tables.results import Result
from lab.tables.specimens import Specimen

from .conftest import new_specimens, running, tcp_instrument

PROFILE = get_profile("generic")
CLOCK = datetime(2026, 11, 30, 8, 0, 0)


def message(
    orders: list[tuple[str, str]], *, control: bool, name: str, when: datetime
) -> list[Record]:
    """One ASTM message holding an O record and an NA R record per (specimen ID, value)."""
    records: list[Record] = []
    for accession, value in orders:
        part = PROFILE.results_message(
            SpecimenOrder(accession_number=accession, test_codes=("NA",)),
            [MeasuredResult(test_code="NA", value=value, unit="mmol/L", completed_at=when)],
            name=name,
            now=when,
            control=control,
        )
        body = [r for r in part if not isinstance(r, TerminatorRecord)]
        records.extend(body if not records else body[2:])  # one H and P record per message
    records.append(TerminatorRecord.create())
    return records


def na_result(factory: sessionmaker[Session], accession: str) -> Result:
    with factory() as session:
        specimen = session.scalars(
            select(Specimen).where(Specimen.accession_number == accession)
        ).one()
        return session.scalars(select(Result).where(Result.specimen_id == specimen.id)).one()


def test_a_1_3s_holds_patient_sodium_until_the_controls_are_in_control_again(
    committing_factory: sessionmaker[Session],
) -> None:
    name = f"qc-e2e-{secrets.token_hex(3)}"
    during = new_specimens(committing_factory, ["NA"])["NA"]
    after = new_specimens(committing_factory, ["NA"])["NA"]

    async def scenario() -> None:
        async with running(tcp_instrument(name), committing_factory) as runner:
            assert runner.listening_port is not None
            analyser = VirtualAnalyser(profile=PROFILE, name=name, clock=lambda: CLOCK)
            channel = await tcp.open_channel("127.0.0.1", runner.listening_port)
            async with analyser.on_line(channel):
                steps = [
                    ([("QC1-DEMO", "144.2"), ("QC2-DEMO", "120.1")], True),  # level 1 +3.5 SD
                    ([(during, "140")], False),
                    ([("QC1-DEMO", "140.3"), ("QC2-DEMO", "119.8")], True),  # in control
                    ([(after, "141")], False),
                ]
                for minute, (orders, control) in enumerate(steps):
                    when = CLOCK.replace(minute=minute * 5)
                    sent = await analyser.send(
                        message(orders, control=control, name=name, when=when)
                    )
                    assert sent, orders

    asyncio.run(scenario())
    held = na_result(committing_factory, during)
    assert held.status == "awaiting_review"
    assert "qc" in [hold["code"] for hold in held.holds]
    released = na_result(committing_factory, after)
    assert "qc" not in [hold["code"] for hold in released.holds]
    assert float(released.value_numeric or 0) == 141
    with committing_factory() as session:
        assert not qc.is_locked(session, instrument=name, test_code="NA")
