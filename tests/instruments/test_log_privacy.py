"""No patient identifier, name or value in the logs (or the status shown on pages) when analyser
messages fail: a log line names the analyser, the message, the record's index and the kind of
failure. The messages here carry the patient's fødselsnummer and name in the P record, as
analysers do, and the failures quote them in their error texts, as database errors can."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import secrets
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from instruments import messages
from instruments.astm.record_codec import parse_records
from instruments.astm.records import Record
from instruments.config import InstrumentConfig
from instruments.profiles import Profile, get_profile
from instruments.runner import LabGateway
from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp
from lab.db import transaction
from lab.tables import UnmatchedResult
from testkit.orders import place_and_receive
from testkit.patients import SyntheticPatient, random_national_number
from tests.conftest import actor

from .conftest import running, tcp_instrument
from .test_conversation import results_of

FNR_PATTERN = re.compile(r"(?<!\d)\d{6}[ -]?\d{5}(?!\d)")  # a fødselsnummer, D- or H-number


class ErrorQuotingGateway(LabGateway):
    """The first `failures` messages fail as a broken database would, quoting the data."""

    def __init__(self, factory: sessionmaker[Session], *, quote: str, failures: int) -> None:
        super().__init__(factory)
        self.quote, self.failures = quote, failures

    def handle(self, instrument: InstrumentConfig, profile: Profile, raws: Sequence[bytes]) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError(f"duplicate key value violates constraint: ({self.quote})")
        return super().handle(instrument, profile, raws)


def test_failing_analyser_messages_leave_no_patient_data_in_the_logs(
    committing_factory: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fnr = random_national_number(random.Random(secrets.randbits(32)))
    patient = SyntheticPatient(fnr=fnr, family="Tveitåsen", given="Solfrid")
    with transaction(committing_factory) as session:
        tubes = place_and_receive(
            session,
            actor("technician"),
            placer=f"LOG{secrets.token_hex(4)}",
            tests=["NA", "K"],
            patient=patient.demographics(),
        )
    serum = tubes["NA"]
    value = "187.654"
    quote = f"{fnr}, {patient.family}, {value}"
    header = "H|\\^&|||GEN^1|||||||P|LIS2-A2|20261127081500"
    person = f"P|1||{fnr}"  # P-3: the practice-assigned patient ID
    named = f"{person}||^{patient.family}^{patient.given}"  # with the name (ISO 8859-1 å)
    stored_badly = [  # storing fails with an error that quotes the data
        header,
        person,
        f"O|1|{serum}||^^^NA\\^^^K|R||||||N||||||||||||||F",
        f"R|1|^^^NA|{value}|mmol/L||N||F||||20261127081000",
        "R|2|^^^K|4.2|mmol/L||N||F||||20261127081000",
        "L|1|N",
    ]
    # Sent in ISO 8859-1 to an analyser configured for UTF-8: the message cannot be read.
    unreadable = [header, named, f"O|1|{serum}", f"R|1|^^^NA|{value}|mmol/L", "L|1|N"]
    database_down = [  # the gateway fails twice, quoting the data; the third try is stored
        header,
        person,
        f"O|1|{serum}||^^^K|R||||||N||||||||||||||F",
        "R|1|^^^K|4.3|mmol/L||N||F||||20261127082000",
        "L|1|N",
    ]
    original = messages.results.record_tube

    def record_tube_quoting(session: Session, **kwargs: Any) -> Any:
        if any(m.value == value for m in kwargs["measurements"]):
            raise ValueError(f"invalid input for numeric: ({quote})")
        return original(session, **kwargs)

    monkeypatch.setattr(messages.results, "record_tube", record_tube_quoting)
    name = f"log-{secrets.token_hex(3)}"
    gateway = ErrorQuotingGateway(committing_factory, quote=quote, failures=0)

    async def scenario() -> tuple[list[bool], dict[str, object]]:
        config = tcp_instrument(name, encoding="utf-8")
        async with running(config, committing_factory, gateway=gateway) as runner:
            assert runner.listening_port is not None
            analyser = VirtualAnalyser(
                profile=get_profile("generic"), name="GEN", encoding="latin-1"
            )
            channel = await tcp.open_channel("127.0.0.1", runner.listening_port)
            taken = []
            async with analyser.on_line(channel):
                for lines in (stored_badly, unreadable):
                    taken.append(await analyser.send(_records(lines)))
                gateway.failures = 2
                taken.append(await analyser.send(_records(database_down)))
            return taken, runner.status.as_dict()

    caplog.set_level(logging.DEBUG)
    taken, status = asyncio.run(scenario())
    assert taken == [True, True, True]  # every message taken in the end, none refused for good

    # What failed is where a person finds it: stored, or in the unmatched queue.
    stored = results_of(committing_factory, serum)
    assert stored["K"].value_numeric is not None
    with committing_factory() as session:
        kept = session.scalars(
            select(UnmatchedResult).where(UnmatchedResult.instrument == name)
        ).all()
    assert sorted(row.value for row in kept) == sorted([value, ""])  # NA, the unreadable one
    assert all(fnr in row.raw_message for row in kept)  # the whole message, for the resolver

    # The logs say what failed, where, and nothing of the patient.
    text = caplog.text + "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.stack_info or ''}" for r in caplog.records
    )
    assert "record 4 of a message not stored (ValueError" in text
    assert "could not be read" in text
    assert "not stored (RuntimeError" in text
    shown = f"{text}\n{status}"
    for secret in (fnr, patient.family, patient.given, value, "Tveit"):
        assert secret not in shown
    assert not FNR_PATTERN.search(shown)


def _records(lines: Sequence[str]) -> list[Record]:
    return parse_records([line.encode("latin-1") for line in lines], encoding="latin-1")
