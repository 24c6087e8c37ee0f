"""Serum indices an analyser sends as R records (the codes its `serum_indices` names) are not
stored as results: they go with every result of the specimen to the rules, which hold a
potassium over its haemolysis limit with `interference` (demo rules active)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from instruments.astm.record_codec import parse_records
from instruments.config import ConfigError, InstrumentConfig, TcpSettings, parse_config
from instruments.messages import handle_message
from instruments.profiles import get_profile
from lab.catalog.rules import snapshot
from lab.results import queries as result_queries
from lab.rulesets.service import ActiveRules
from lab.specimens import service as specimens
from lab.users.roles import Role
from testkit.orders import place
from tests.conftest import actor

BIO = actor(Role.TECHNICIAN)
LEGE = actor(Role.PHYSICIAN)
INSTRUMENT = InstrumentConfig(
    name="demo",
    profile="generic",
    transport=TcpSettings(mode="server", port=0),
    local_codes=True,
    serum_indices={"h": "HIL-H", "l": "HIL-L"},
)


def _message(number: str, h_index: str) -> list[bytes]:
    lines = [
        "H|\\^&|||cobas^1|||||||P|1|20261127080000",
        "P|1",
        f"O|1|{number}||^^^NA\\^^^K|R",
        "R|1|^^^NA|140|mmol/L||N||F||||20261127080000",
        "R|2|^^^K|4.1|mmol/L||N||F||||20261127080000",
        f"R|3|^^^HIL-H|{h_index}|||||F||||20261127080000",
        "R|4|^^^HIL-L|5|||||F||||20261127080000",
        "L|1|N",
    ]
    return [line.encode() for line in lines]


def _tube(db: Session, placer: str) -> str:
    order = place(db, BIO, placer=placer, tests=["NA", "K"])
    number = next(s.accession_number for s in specimens.tubes_of_order(db, order.id))
    specimens.receive(db, actor=BIO, number=number)
    return number


def test_a_haemolysed_potassium_is_held_and_the_indices_are_no_results(
    db: Session, demo_rules: ActiveRules
) -> None:
    number = _tube(db, "SI-1")
    records = parse_records(_message(number, "80"))
    outcome = handle_message(
        db, instrument=INSTRUMENT, profile=get_profile("generic"), records=records
    )
    assert (outcome.recorded, outcome.unmatched) == (2, 0)
    codes = {t.id: t.code for t in snapshot(db).by_id.values()}
    stored = {codes[r.test_id]: r for r in result_queries.for_specimen(db, number, actor=LEGE)}
    assert set(stored) == {"NA", "K"}
    assert [h["code"] for h in stored["K"].holds] == ["interference"]
    assert stored["K"].status == "awaiting_review"
    assert stored["NA"].status == "verified"  # sodium is not held for haemolysis
    # Below the limit: released.
    calm = _tube(db, "SI-2")
    handle_message(
        db,
        instrument=INSTRUMENT,
        profile=get_profile("generic"),
        records=parse_records(_message(calm, "20")),
    )
    stored = {codes[r.test_id]: r for r in result_queries.for_specimen(db, calm, actor=LEGE)}
    assert stored["K"].status == "verified" and stored["K"].holds == []


def test_serum_indices_are_checked_when_the_file_is_read() -> None:
    entry = {
        "name": "c",
        "profile": "generic",
        "tcp": {"mode": "server", "host": "127.0.0.1", "port": 0},
    }
    read = parse_config({"instrument": [{**entry, "serum_indices": {"h": "HI"}}]})
    assert read[0].serum_indices == {"h": "HI"}
    with pytest.raises(ConfigError, match="serum_indices"):
        parse_config({"instrument": [{**entry, "serum_indices": {"x": "HI"}}]})
