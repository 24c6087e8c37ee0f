"""Vendor dialect cases over a real TCP line into PostgreSQL: a cobas test with its rerun after
dilution (`^^^685/` and `^^^685/5`) in one message and a rerun in a later one; Sysmex XN counts
in `10*3/uL` against the catalog's `10*9/L`; a Sysmex message whose O-3 is empty. Messages are
written as the vendors' host interface documents describe them (docs/analysers.md)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from instruments.astm.record_codec import parse_records
from instruments.config import InstrumentConfig
from instruments.profiles import get_profile
from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp
from lab.config import Settings
from lab.main import create_app
from lab.specimens import service as specimens
from lab.tables import AuditEvent, Hl7Message, UnmatchedResult
from testkit.database import ScratchDatabase
from tests.conftest import auth

from .conftest import new_specimens, running, tcp_instrument
from .test_conversation import results_of


def send_messages(
    factory: sessionmaker[Session], config: InstrumentConfig, messages: Sequence[Sequence[str]]
) -> list[bool]:
    """Each message (record lines) sent as the analyser would; True where the host ACKed it."""
    profile = get_profile(config.profile)

    async def scenario() -> list[bool]:
        async with running(config, factory) as runner:
            assert runner.listening_port is not None
            analyser = VirtualAnalyser(profile=profile, name=config.name)
            channel = await tcp.open_channel("127.0.0.1", runner.listening_port)
            taken = []
            async with analyser.on_line(channel):
                for lines in messages:
                    records = parse_records([line.encode("latin-1") for line in lines])
                    taken.append(await analyser.send(records))
            return taken

    return asyncio.run(scenario())


def unmatched_of(factory: sessionmaker[Session], instrument: str) -> list[UnmatchedResult]:
    with factory() as session:
        query = select(UnmatchedResult).where(UnmatchedResult.instrument == instrument)
        return list(session.scalars(query.order_by(UnmatchedResult.id)))


def cobas_message(accession: str, *results: tuple[str, str, str]) -> list[str]:
    """cobas c 311 result upload (RSUPL^REAL): `^^^code/dilution`, module P1 in R-14 and the
    C record of result data flags after every R."""
    lines = [
        "H|\\^&|||c311^1|||||host|RSUPL^REAL|P|1|20261127081500",
        "P|1",
        f"O|1|{accession}|0^50001^1^^SAMPLE^NORMAL|^^^989/\\^^^990/|R||||||N||||||||||||||F",
    ]
    for number, (test, value, completed) in enumerate(results, start=1):
        lines.append(f"R|{number}|^^^{test}|{value}|mmol/L||N||F||||{completed}|P1")
        lines.append("C|1|I|0|I")
    return [*lines, "L|1|N"]


def test_a_cobas_rerun_after_dilution_is_a_further_measurement_and_the_chosen_one_is_reported(
    committing_factory: sessionmaker[Session], committed_database: ScratchDatabase, tmp_path: Path
) -> None:
    name = f"c311-{secrets.token_hex(3)}"
    config = tcp_instrument(
        name, profile="cobas", local_codes=False, tests={"989": "NA", "990": "K"}
    )
    serum = new_specimens(committing_factory, ["NA", "K"])["NA"]
    first = cobas_message(
        serum,
        ("989/", "141", "20261127080000"),
        ("989/5", "139", "20261127080500"),  # the same test, measured again on a dilution
        ("990/", "4.1", "20261127080000"),
        ("999/", "12", "20261127080000"),  # a test this analyser has no mapping for
    )
    later = cobas_message(serum, ("989/", "140", "20261127093000"))  # a rerun, an hour on
    assert send_messages(committing_factory, config, [first, later, later]) == [True] * 3

    stored = results_of(committing_factory, serum)
    assert stored["K"].value_numeric == Decimal("4.1")
    with committing_factory() as session:
        sodium = session.get_one(type(stored["NA"]), stored["NA"].id)
        measured = [(m.origin, m.dilution, str(m.value_numeric)) for m in sodium.measurements]
    assert measured == [("first", "", "141"), ("dilution", "5", "139"), ("rerun", "", "140")]
    assert sodium.status == "awaiting_review"
    assert any("choose the one to report" in hold["text"] for hold in sodium.holds)
    (kept,) = unmatched_of(committing_factory, name)
    assert kept.instrument_test_code == "999" and kept.specimen_id == serum
    assert kept.raw_message.startswith("H|") and "989/5" in kept.raw_message
    assert kept.raw_message.count("\r") == len(first) - 1  # the whole message, every record

    app = create_app(
        Settings(database_url=committed_database.url, data_dir=tmp_path),
        session_factory=committing_factory,
    )
    physician = auth(committed_database.tokens["physician"])
    with TestClient(app) as client:
        listed = client.get(f"/api/v1/results/{sodium.id}", headers=physician).json()
        diluted = next(m for m in listed["measurements"] if m["origin"] == "dilution")
        chosen = client.post(
            f"/api/v1/results/{sodium.id}/choose",
            json={"measurement_id": diluted["id"]},
            headers=physician,
        )
        assert chosen.status_code == 200, chosen.text
        assert chosen.json()["value"] == "139"
        for result in (sodium.id, stored["K"].id):
            verified = client.post(f"/api/v1/results/{result}/verify", json={}, headers=physician)
            assert verified.status_code == 200, verified.text
    with committing_factory() as session:
        patient = specimens.get_by_accession(session, serum).patient_id
        sent = session.scalars(
            select(Hl7Message).where(
                Hl7Message.direction == "out", Hl7Message.patient_id == patient
            )
        ).all()
    sodium_lines = [
        segment
        for message in sent
        for segment in message.raw.decode("utf-8").split("\r")
        if segment.startswith("OBX") and "NA" in segment.split("|")[3]
    ]
    assert sodium_lines and all("|139|" in line for line in sodium_lines), sodium_lines
    assert not any("|141|" in line or "|140|" in line for line in sodium_lines)


def sysmex_message(o3: str, o4: str, *results: tuple[str, str, str]) -> list[str]:
    """Sysmex XN result upload: `^^^^WBC^1` test IDs; the sample number may be in O-4
    (`rack^tube^sample number^attribute`, padded) with O-3 empty."""
    lines = [
        "H|\\^&|||XN-350^00-22^11001^^^^12345678||||||||E1394-97",
        "P|1",
        f"O|1|{o3}|{o4}|^^^^WBC\\^^^^PLT|||||||N||||||||||||||F",
    ]
    for number, (code, value, unit) in enumerate(results, start=1):
        lines.append(f"R|{number}|^^^^{code}^1|{value}|{unit}||N||||||20261127081000")
    return [*lines, "L|1|N"]


def test_sysmex_counts_in_another_ucum_unit_and_the_sample_number_in_o4(
    committing_factory: sessionmaker[Session], committed_database: ScratchDatabase, tmp_path: Path
) -> None:
    name = f"xn-{secrets.token_hex(3)}"
    config = tcp_instrument(
        name, profile="sysmex_xn", local_codes=False, tests={"WBC": "LPK", "PLT": "TPK"}
    )
    edta = new_specimens(committing_factory, ["LPK", "TPK"])["LPK"]
    stranger = "2699999990"  # well-formed, no specimen has it
    padded = f"^^{edta:>22}^B"  # O-3 empty, the number padded in O-4's third component
    taken = send_messages(
        committing_factory,
        config,
        [
            # x10^3/uL, written with the component escape &S& (LIS2-A2 5.6.3): no UCUM unit
            sysmex_message("", padded, ("WBC", "7.5", "10*3/uL"), ("PLT", "250", "x10&S&3/uL")),
            sysmex_message("", f"^^{stranger:>22}^B", ("WBC", "6.1", "10*3/uL")),
        ],
    )
    assert taken == [True, True]
    stored = results_of(committing_factory, edta)
    wbc = stored["LPK"]
    assert (wbc.value_numeric, wbc.unit) == (Decimal("7.5"), "10*9/L")
    with committing_factory() as session:
        measurement = session.get_one(type(wbc), wbc.id).measurements[0]
        assert (measurement.original_value, measurement.original_unit) == ("7.5", "10*3/uL")
    assert "TPK" not in stored  # x10^3/uL is no UCUM unit: kept for a person
    rows = unmatched_of(committing_factory, name)
    assert [(r.specimen_id, r.instrument_test_code, r.unit) for r in rows] == [
        (edta, "PLT", "x10^3/uL"),
        (stranger, "WBC", "10*3/uL"),  # the sample number is kept, so it can be resolved
    ]
    assert "not a UCUM unit" in rows[0].reason

    app = create_app(
        Settings(database_url=committed_database.url, data_dir=tmp_path),
        session_factory=committing_factory,
    )
    technician = auth(committed_database.tokens["technician"])
    with TestClient(app) as client:
        listed = client.get(f"/api/v1/instruments/unmatched?instrument={name}", headers=technician)
        assert [r["raw_message"].split("\r")[0][:5] for r in listed.json()] == ["H|\\^&"] * 2
        with committing_factory() as session:
            looked = session.scalars(
                select(AuditEvent.detail).where(AuditEvent.action == "read.unmatched_result")
            ).all()
        assert ",".join(str(r.id) for r in rows) in looked  # the look is audited
        as_sent = client.post(
            f"/api/v1/instruments/unmatched/{rows[0].id}/resolve",
            json={"accession_number": edta, "test_code": "TPK"},
            headers=technician,
        )
        assert as_sent.status_code == 422 and "not a UCUM unit" in as_sent.text
        resolved = client.post(
            f"/api/v1/instruments/unmatched/{rows[0].id}/resolve",
            json={"accession_number": edta, "test_code": "TPK", "unit": "10*3/uL"},
            headers=technician,
        )
        assert resolved.status_code == 200, resolved.text
        platelets = client.get(f"/api/v1/results?accession={edta}", headers=technician).json()
        tpk = next(r for r in platelets if r["test_code"] == "TPK")
        assert (tpk["value"], tpk["unit"]) == ("250", "10*9/L")
        detail = client.get(f"/api/v1/results/{tpk['id']}", headers=technician).json()
        assert [(m["original_value"], m["original_unit"]) for m in detail["measurements"]] == [
            ("250", "x10^3/uL")
        ]
        other = new_specimens(committing_factory, ["LPK"])["LPK"]
        moved = client.post(
            f"/api/v1/instruments/unmatched/{rows[1].id}/resolve",
            json={"accession_number": other, "test_code": "LPK"},
            headers=technician,
        )
        assert moved.status_code == 200, moved.text
    assert results_of(committing_factory, other)["LPK"].unit == "10*9/L"


def test_the_sample_number_fields_are_configurable_per_analyser(
    committing_factory: sessionmaker[Session],
) -> None:
    from instruments.config import parse_config

    name = f"gen-{secrets.token_hex(3)}"
    (config,) = parse_config(
        {
            "instrument": [
                {
                    "name": name,
                    "profile": "generic",
                    "local_codes": True,
                    "specimen_fields": ["O-3", "O-2.2"],
                    "tcp": {"mode": "server", "port": 0},
                }
            ]
        }
    )
    serum = new_specimens(committing_factory, ["CRP"])["CRP"]
    lines = [
        "H|\\^&|||GEN^1|||||||P|LIS2-A2|20261127081500",
        "P|1",
        f"O|1^{serum}||||R||||||N||||||||||||||F",
        "R|1|^^^CRP|12|mg/L||N||F||||20261127081000",
        "L|1|N",
    ]
    assert send_messages(committing_factory, config, [lines]) == [True]
    assert results_of(committing_factory, serum)["CRP"].value_numeric == Decimal(12)
    assert unmatched_of(committing_factory, name) == []
