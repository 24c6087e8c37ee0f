"""End to end against a running `lab serve` whose demo seeded the demo rules active (as
`make run` does on an empty database): orders from the record over HL7, tubes received over the
API, results from an analyser over a real ASTM TCP connection, and what the record gets back.

- an unremarkable result is verified by `autoverification v1` and reaches the record (ORU^R01,
  OBX-11 `F`), its creatinine with the eGFR calculated from it in the same message;
- each hold reason comes from its own case: a value no patient can have (`plausibility`), the
  analyser's HH flag (`critical`), a creatinine that rose overnight (`delta`), a child for whom
  no interval exists (`no_reference_interval`), an analyser flag (`instrument_flag`), a
  haemolysis index over potassium's limit (`interference`, sent as an R record the analyser's
  `serum_indices` names);
- a TSH above its interval adds FT4, which the analyser's host query is then answered with;
- QC: a 1-3s control run locks NA on the analyser, a patient NA is held with `qc`, an in-control
  run unlocks, the next patient NA is released by autoverification, the held one stays held.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from instruments.astm.records import Record, TerminatorRecord
from instruments.profiles import SpecimenOrder, get_profile
from instruments.profiles.base import MeasuredResult
from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp
from testkit.api import ApiClient
from testkit.database import ScratchDatabase, create_database, drop_database
from testkit.mllp import ack_code, send_hl7
from testkit.orders import oml_o21
from testkit.patients import SyntheticPatient, national_number
from testkit.process import Analyser, Lab, running_lab
from testkit.record import FakeRecord

pytestmark = pytest.mark.slow
PROFILE = get_profile("generic")
OSLO = ZoneInfo("Europe/Oslo")
DEMO = {"LAB_DEMO": "1", "LAB_DEMO_PASSWORD": "demo demo demo"}
# The analyser sends the serum indices as R records with these codes.
WITH_INDICES = Analyser(name="tcp", serum_indices={"h": "HIL-H", "i": "HIL-I", "l": "HIL-L"})


@pytest.fixture(scope="module")
def empty_database(database_server: str) -> Iterator[ScratchDatabase]:
    """An empty database: `lab serve` with LAB_DEMO=1 migrates and seeds it as `make run` does
    (demo catalog, users, QC materials, and version 1 of each demo rule document, active)."""
    database = create_database(database_server, "judged", migrate=False)
    yield database
    drop_database(database)


def patient(born: date, sex: str, family: str) -> SyntheticPatient:
    individual = 500 if born.year >= 2000 else secrets.randbelow(400)
    return SyntheticPatient(
        fnr=national_number(born, individual), family=family, given="Test", sex=sex, born=born
    )


def analyser_now() -> datetime:
    """The analyser's wall clock (local time without a zone, as LIS2-A2 timestamps are)."""
    return datetime.now(OSLO).replace(tzinfo=None, microsecond=0)


def message(
    accession: str,
    results: Sequence[tuple[str, str, tuple[str, ...]]],
    *,
    when: datetime,
    control: bool = False,
) -> list[Record]:
    """One ASTM message: an O record for the tube and an R record per (test, value, R-7 flags)."""
    return PROFILE.results_message(
        SpecimenOrder(accession_number=accession, test_codes=tuple(r[0] for r in results)),
        [
            MeasuredResult(test_code=code, value=value, unit="", flags=flags, completed_at=when)
            for code, value, flags in results
        ],
        name="tcp",
        now=when,
        control=control,
    )


def control_run(levels: Sequence[tuple[str, str]], *, when: datetime) -> list[Record]:
    """Both levels of an NA control run in one message (one message is one run)."""
    records: list[Record] = []
    for accession, value in levels:
        part = message(accession, [("NA", value, ())], when=when, control=True)
        body = [r for r in part if not isinstance(r, TerminatorRecord)]
        records.extend(body if not records else body[2:])  # one H and one P record
    records.append(TerminatorRecord.create())
    return records


@dataclass(slots=True)
class Orders:
    lab: Lab
    bio: ApiClient

    async def place(self, who: SyntheticPatient, tests: list[str]) -> str:
        """Order `tests` from the record, receive the tube; its accession number."""
        placer = f"JE{secrets.token_hex(4).upper()}"
        sent = oml_o21(control_id=f"{placer}-1", placer=placer, patient=who, tests=tests)
        acks = await send_hl7("127.0.0.1", self.lab.mllp_port, [sent])
        assert [ack_code(a) for a in acks] == ["AA"]
        tubes = await asyncio.to_thread(self.bio.tubes, placer)
        assert len(tubes) == 1, tubes
        number = str(tubes[0]["accession_number"])
        await asyncio.to_thread(self.bio.receive, number)
        return number

    async def results(self, accession: str) -> dict[str, dict[str, Any]]:
        found = await asyncio.to_thread(
            self.bio.call, "GET", f"/api/v1/results?accession={accession}"
        )
        return {r["test_code"]: r for r in found}


def codes(result: dict[str, Any]) -> list[str]:
    return [hold["code"] for hold in result["holds"]]


async def _until(check: Any, what: str, seconds: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        found = await check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)


def test_results_over_astm_are_judged_by_the_demo_rules(
    empty_database: ScratchDatabase, tmp_path: Path
) -> None:
    adult_f = patient(date(1966, 1, 10), "F", "Vanlig")
    adult_m = patient(date(1958, 6, 2), "M", "Deltasen")
    child = patient(date.today() - timedelta(days=5 * 365), "M", "Barnesen")

    async def scenario() -> None:
        record = FakeRecord()
        async with running_lab(
            empty_database.url, tmp_path, analysers=[WITH_INDICES], record=record, extra_env=DEMO
        ) as lab:
            bio = ApiClient(lab.base, lab.token("bio"))
            admin = ApiClient(lab.base, lab.token("admin"))
            rules = await asyncio.to_thread(admin.call, "GET", "/api/v1/rules")
            assert {(r["kind"], r["version"], r["state"]) for r in rules} == {
                ("autoverification", 1, "active"),
                ("formulas", 1, "active"),
                ("reflex", 1, "active"),
            }
            orders = Orders(lab=lab, bio=bio)
            now = analyser_now()
            plain = await orders.place(adult_f, ["NA", "K", "KREA"])
            implausible = await orders.place(adult_f, ["NA"])
            critical = await orders.place(adult_f, ["K"])
            flagged = await orders.place(adult_f, ["K"])
            haemolysed = await orders.place(adult_f, ["K"])
            young = await orders.place(child, ["NA"])
            before = await orders.place(adult_m, ["KREA"])
            after = await orders.place(adult_m, ["KREA"])
            thyroid = await orders.place(adult_f, ["TSH"])

            analyser = VirtualAnalyser(profile=PROFILE, name="tcp", clock=analyser_now)
            channel = await tcp.open_channel("127.0.0.1", lab.astm_port)
            async with analyser.on_line(channel):
                for records in (
                    message(
                        plain,
                        [("NA", "140", ()), ("K", "4.1", ()), ("KREA", "80", ())],
                        when=now,
                    ),
                    message(implausible, [("NA", "41", ())], when=now),
                    message(critical, [("K", "4.1", ("HH",))], when=now),
                    message(flagged, [("K", "4.1", ("CLOT",))], when=now),
                    message(
                        haemolysed,
                        [("K", "4.1", ()), ("HIL-H", "80", ()), ("HIL-L", "5", ())],
                        when=now,
                    ),
                    message(young, [("NA", "140", ())], when=now),
                    message(before, [("KREA", "84", ())], when=now - timedelta(hours=12)),
                    message(after, [("KREA", "160", ())], when=now),
                    message(thyroid, [("TSH", "9.5", ())], when=now),
                ):
                    assert await analyser.send(records)
                # The reflex FT4 is on the tube now: the host query names it.
                asked = await analyser.ask(thyroid)
                assert asked is not None and "FT4" in asked.test_codes, asked

            found = await orders.results(plain)
            for code in ("NA", "K", "KREA", "EGFR"):
                assert found[code]["status"] == "verified", (code, found[code])
                assert found[code]["verified_by"] == "autoverification v1"
                assert found[code]["holds"] == []
            # A woman of 60 with creatinine 80 umol/L: eGFR 72.7 (CKD-EPI 2021), reported 73.
            assert found["EGFR"]["value"] == "73"

            def oru_of(tests: set[str]) -> Any:
                for received in record.filed.values():
                    sent = {obs[0]: obs for obs in received.observations}
                    if tests <= set(sent):
                        return sent
                return None

            async def plain_oru() -> Any:
                return oru_of({"NA", "K", "KREA", "EGFR"})

            sent = await _until(plain_oru, "the ORU of the unremarkable order")
            assert {code: obs[3] for code, obs in sent.items()} == {
                "NA": "F",
                "K": "F",
                "KREA": "F",
                "EGFR": "F",
            }
            assert sent["EGFR"][1] == "73"

            expected = {
                implausible: ("NA", "plausibility"),
                critical: ("K", "critical"),
                flagged: ("K", "instrument_flag"),
                haemolysed: ("K", "interference"),
                young: ("NA", "no_reference_interval"),
                after: ("KREA", "delta"),
            }
            for accession, (code, hold) in expected.items():
                result = (await orders.results(accession))[code]
                assert result["status"] == "awaiting_review", (hold, result)
                assert result["verified_by"] is None
                assert hold in codes(result), (hold, result["holds"])
            # The first creatinine of the man was unremarkable and released.
            first = (await orders.results(before))["KREA"]
            assert first["verified_by"] == "autoverification v1"

            tsh = (await orders.results(thyroid))["TSH"]
            assert tsh["flags"] == ["H"] and tsh["verified_by"] == "autoverification v1"

    asyncio.run(scenario())


def test_a_qc_lock_holds_patient_sodium_until_an_in_control_run(
    empty_database: ScratchDatabase, tmp_path: Path
) -> None:
    someone = patient(date(1975, 3, 3), "F", "Kontrollsen")

    async def scenario() -> None:
        async with running_lab(empty_database.url, tmp_path, extra_env=DEMO) as lab:
            bio = ApiClient(lab.base, lab.token("bio"))
            orders = Orders(lab=lab, bio=bio)
            during = await orders.place(someone, ["NA"])
            later = await orders.place(someone, ["NA"])
            now = analyser_now()
            analyser = VirtualAnalyser(profile=PROFILE, name="tcp", clock=analyser_now)
            channel = await tcp.open_channel("127.0.0.1", lab.astm_port)
            async with analyser.on_line(channel):
                # Level 1 at +3.5 SD (140 +- 1.2): 1-3s, a rejection that locks NA on `tcp`.
                assert await analyser.send(
                    control_run([("QC1-DEMO", "144.2"), ("QC2-DEMO", "120.1")], when=now)
                )
                status = await asyncio.to_thread(
                    bio.call, "GET", "/api/v1/qc/status?instrument=tcp"
                )
                na = next(t for t in status["tests"] if t["test"] == "NA")
                assert na["state"] == "locked" and na["rule"] == "1-3s", na
                assert await analyser.send(
                    message(during, [("NA", "140", ())], when=now + timedelta(minutes=1))
                )
                held = (await orders.results(during))["NA"]
                assert held["status"] == "awaiting_review" and "qc" in codes(held)
                # Both levels in control: unlocked.
                assert await analyser.send(
                    control_run(
                        [("QC1-DEMO", "140.3"), ("QC2-DEMO", "119.8")],
                        when=now + timedelta(minutes=2),
                    )
                )
                assert await analyser.send(
                    message(later, [("NA", "141", ())], when=now + timedelta(minutes=3))
                )
            status = await asyncio.to_thread(bio.call, "GET", "/api/v1/qc/status?instrument=tcp")
            assert next(t for t in status["tests"] if t["test"] == "NA")["state"] == "in_control"
            released = (await orders.results(later))["NA"]
            assert released["status"] == "verified", released
            assert released["verified_by"] == "autoverification v1" and released["holds"] == []
            # The one measured while locked stays held until a person reviews it.
            still = (await orders.results(during))["NA"]
            assert still["status"] == "awaiting_review" and "qc" in codes(still)

    asyncio.run(scenario())
