"""End to end against a running `lab serve` seeded as `make run` does (the demo rules active):
orders over HL7, results from an analyser over a real ASTM TCP connection, and the ORU the
record gets: the lipids with the non-HDL and Friedewald LDL calculated from them, and calcium
with albumin with the albumin-corrected calcium, each in the same message as its inputs. A low
calcium alone adds albumin, and the analyser's host query is then answered with it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp
from testkit.api import ApiClient
from testkit.database import ScratchDatabase, create_database, drop_database
from testkit.process import running_lab
from testkit.record import FakeRecord
from tests.results.test_judgement_end_to_end import (
    DEMO,
    PROFILE,
    WITH_INDICES,
    Orders,
    _until,
    analyser_now,
    message,
    patient,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def empty_database(database_server: str) -> Iterator[ScratchDatabase]:
    database = create_database(database_server, "formulas", migrate=False)
    yield database
    drop_database(database)


def test_calculated_results_reach_the_record_with_their_inputs(
    empty_database: ScratchDatabase, tmp_path: Path
) -> None:
    woman = patient(date(1966, 1, 10), "F", "Lipidsen")

    async def scenario() -> None:
        record = FakeRecord()
        async with running_lab(
            empty_database.url, tmp_path, analysers=[WITH_INDICES], record=record, extra_env=DEMO
        ) as lab:
            orders = Orders(lab=lab, bio=ApiClient(lab.base, lab.token("bio")))
            lipids = await orders.place(woman, ["KOL", "HDL", "TG"])
            calcium = await orders.place(woman, ["CA", "ALB"])
            low = await orders.place(woman, ["CA"])
            now = analyser_now()
            analyser = VirtualAnalyser(profile=PROFILE, name="tcp", clock=analyser_now)
            channel = await tcp.open_channel("127.0.0.1", lab.astm_port)
            async with analyser.on_line(channel):
                for records in (
                    message(
                        lipids,
                        [("KOL", "5.2", ()), ("HDL", "1.3", ()), ("TG", "1.5", ())],
                        when=now,
                    ),
                    message(calcium, [("CA", "2.30", ()), ("ALB", "40", ())], when=now),
                    message(low, [("CA", "2.05", ())], when=now),
                ):
                    assert await analyser.send(records)
                asked = await analyser.ask(low)  # the reflex albumin is on the tube now
                assert asked is not None and asked.test_codes == ("ALB",), asked
                assert await analyser.send(message(low, [("ALB", "30", ())], when=now))

            def oru_of(tests: set[str]) -> Any:
                for received in record.filed.values():
                    sent = {obs[0]: obs for obs in received.observations}
                    if tests <= set(sent):
                        return sent
                return None

            async def lipid_oru() -> Any:
                return oru_of({"KOL", "HDL", "TG", "NHDL", "LDLF"})

            async def calcium_oru() -> Any:
                return oru_of({"CA", "ALB", "CAKORR"})

            sent = await _until(lipid_oru, "the ORU with the lipids")
            # 5.2 - 1.3 = 3.9; 5.2 - 1.3 - 1.5/2.2 = 3.218 -> 3.2 (mmol/L)
            assert (sent["NHDL"][1], sent["LDLF"][1]) == ("3.9", "3.2")
            assert {obs[3] for obs in sent.values()} == {"F"}
            sent = await _until(calcium_oru, "the ORU with calcium and albumin")
            # 2.30 + 0.020 x (41.3 - 40) = 2.326 -> 2.33 mmol/L
            assert sent["CAKORR"][1] == "2.33" and sent["CAKORR"][3] == "F"

            found = await orders.results(low)
            # 2.05 + 0.020 x (41.3 - 30) = 2.276 -> 2.28 mmol/L, with its calcium and albumin
            assert found["CAKORR"]["value"] == "2.28"
            statuses = {code: r["status"] for code, r in found.items()}
            assert len(set(statuses.values())) == 1, statuses  # released together, or not at all

    asyncio.run(scenario())
