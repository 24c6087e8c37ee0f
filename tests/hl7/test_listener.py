"""The MLLP listener end to end over real sockets, with python-hl7 (`hl7==0.4.5`) as the sender."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from pathlib import Path

import hl7
import hl7.mllp
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from lab.hl7.inbox import Inbox, Stored
from lab.hl7.listener import Hl7Listener, server_tls_context
from lab.hl7.senders import Caller
from lab.orders import service as orders
from lab.patients import service as patients
from lab.tables import Order, Specimen
from testkit.mllp import ClosedBeforeAnswer
from testkit.patients import random_national_number
from tests.hl7.conftest import (
    LoopThread,
    RunningListener,
    adt,
    err_locations,
    exchange,
    fnr_cx,
    logged,
    msa,
    oml,
    unique,
)

MLLP_SEND = Path(sys.executable).with_name("mllp_send")


def test_mllp_send_places_an_order_with_specimens(
    listener: RunningListener, committing: sessionmaker[Session], tmp_path: Path
) -> None:
    control_id, placer = unique("C"), unique("P")
    message = oml(
        control_id=control_id,
        placer=placer,
        fnr=random_national_number(),
        tests=(("HB", "L"), ("2160-0", "LN")),
    )
    path = tmp_path / "order.hl7"
    path.write_bytes(b"\x0b" + message.encode() + b"\x1c\r")
    sent = subprocess.run(
        [str(MLLP_SEND), "--file", str(path), "-p", str(listener.port), "127.0.0.1"],
        capture_output=True,
        timeout=30,
        check=True,
    )
    answer = sent.stdout.decode().strip().replace("\n", "\r")
    assert msa(answer) == ("AA", control_id)
    with committing() as session:
        order = orders.find_by_placer(session, placer, "EPIC")
        assert order is not None and order.source == "hl7"
        assert sorted(t.test.code for t in order.tests) == ["HB", "KREA"]
        tubes = session.scalars(select(Specimen).where(Specimen.order_id == order.id)).all()
        assert sorted(t.container for t in tubes) == ["EDTA", "SERUM"]
    [row] = logged(committing, control_id)
    assert row.status == "processed" and row.raw.rstrip(b"\r") == message.encode().rstrip(b"\r")
    assert row.ack is not None and msa(row.ack) == ("AA", control_id)


def test_one_connection_orders_cancels_and_updates_with_python_hl7(
    listener: RunningListener, committing: sessionmaker[Session]
) -> None:
    fnr, placer = random_national_number(), unique("P")
    messages = [
        oml(control_id=unique("C"), placer=placer, fnr=fnr, tests=(("HB", "L"), ("CRP", "L"))),
        oml(control_id=unique("C"), placer=placer, fnr=fnr, tests=(("CRP", "L"),), control="CA"),
        adt(control_id=unique("C"), event="A08", pid3=fnr_cx(fnr), family="Nyttnavn"),
    ]

    async def send_all() -> list[str]:
        reader, writer = await hl7.mllp.open_hl7_connection(
            "127.0.0.1", listener.port, encoding="utf-8"
        )
        answers = []
        try:
            for message in messages:
                writer.writemessage(hl7.parse(message))
                await writer.drain()
                answers.append(str(await asyncio.wait_for(reader.readmessage(), 20)))
        finally:
            writer.close()
        return answers

    answers = asyncio.run(send_all())
    assert [msa(a)[0] for a in answers] == ["AA", "AA", "AA"]
    with committing() as session:
        order = orders.find_by_placer(session, placer, "EPIC")
        assert order is not None
        assert {t.test.code: t.status for t in order.tests} == {"HB": "ordered", "CRP": "cancelled"}
        patient = patients.find_by_identifier(session, fnr, "FNR")
        assert patient is not None and patient.family_name == "Nyttnavn"


@pytest.mark.parametrize(
    ("case", "code", "location"),
    [
        ("unknown test", "AE", "OBR^2^4"),
        ("bad fnr in PID-3 repetition 2", "AE", "PID^1^3^2"),
        ("no placer", "AE", "ORC^1^2"),
        ("unsupported type", "AR", "MSH^1^9^1^1"),
        ("broken structure", "AR", "MSH^1"),
    ],
)
def test_bad_messages_get_an_error_ack_naming_the_field_and_are_kept(
    listener: RunningListener,
    committing: sessionmaker[Session],
    case: str,
    code: str,
    location: str,
) -> None:
    control_id, placer, fnr = unique("C"), unique("P"), random_national_number()
    if case == "unknown test":
        message = oml(
            control_id=control_id, placer=placer, fnr=fnr, tests=(("HB", "L"), ("NOPE", "L"))
        )
    elif case == "bad fnr in PID-3 repetition 2":
        message = oml(
            control_id=control_id, placer=placer, fnr=fnr, extra_pid3="~12345678901^^^NOR^DNR"
        )
    elif case == "no placer":
        message = oml(control_id=control_id, placer="", fnr=fnr).replace("|^EPIC|", "||")
    elif case == "unsupported type":
        message = oml(control_id=control_id, placer=placer, fnr=fnr).replace(
            "OML^O21^OML_O21", "ORU^R01^ORU_R01"
        )
    else:
        header = f"MSH|^~\\&|EPIC|HMN|LAB|STOLAV|2026||OML^O21|{control_id}|P|2.5.1"
        message = f"{header}\rthis is no segment\r"
    [ack] = asyncio.run(exchange(listener.port, [message]))
    assert msa(ack) == (code, control_id)
    assert location in err_locations(ack), (case, err_locations(ack))
    [row] = logged(committing, control_id)
    assert row.status == ("rejected" if code == "AR" else "error")
    assert row.ack == ack.replace("\n", "\r") and row.error
    with committing() as session:
        assert orders.find_by_placer(session, placer, "EPIC") is None


def test_a_duplicate_is_acknowledged_again_and_stored_once(
    listener: RunningListener, committing: sessionmaker[Session]
) -> None:
    control_id, placer = unique("C"), unique("P")
    message = oml(control_id=control_id, placer=placer, fnr=random_national_number())
    first = asyncio.run(exchange(listener.port, [message]))
    again = asyncio.run(exchange(listener.port, [message, message]))
    assert first == again[:1] == again[1:]  # the very ACK sent the first time
    assert msa(first[0]) == ("AA", control_id)
    assert len(logged(committing, control_id)) == 1
    with committing() as session:
        count = session.scalar(
            select(func.count()).select_from(Order).where(Order.placer_order_number == placer)
        )
    assert count == 1


def test_enhanced_mode_sends_commit_then_application_ack(listener: RunningListener) -> None:
    control_id = unique("C")
    message = oml(
        control_id=control_id, placer=unique("P"), fnr=random_national_number(), ack_modes="AL|AL"
    )
    commit, application = asyncio.run(exchange(listener.port, [message], acks_each=2))
    assert msa(commit) == ("CA", control_id)
    assert msa(application) == ("AA", control_id)
    # A repeat gets both again, unchanged.
    assert asyncio.run(exchange(listener.port, [message], acks_each=2)) == [commit, application]


def test_adt_a40_merges_the_patients(
    listener: RunningListener, committing: sessionmaker[Session]
) -> None:
    kept, gone = random_national_number(), unique("HMN")
    messages = [
        adt(control_id=unique("C"), event="A04", pid3=fnr_cx(kept), family="Beholdt"),
        adt(control_id=unique("C"), event="A01", pid3=f"{gone}^^^HMN^PI", family="Borte"),
        adt(
            control_id=unique("C"),
            event="A40",
            pid3=fnr_cx(kept),
            family="Beholdt",
            mrg=f"{gone}^^^HMN^PI",
        ),
    ]
    answers = asyncio.run(exchange(listener.port, messages))
    assert [msa(a)[0] for a in answers] == ["AA", "AA", "AA"]
    with committing() as session:
        survivor = patients.find_by_identifier(session, kept, "FNR")
        followed = patients.find_by_identifier(session, gone, "HMN")
        assert survivor is not None and followed is not None and followed.id == survivor.id


def test_many_connections_at_once(
    listener: RunningListener, committing: sessionmaker[Session]
) -> None:
    placers = [[unique("P") for _ in range(4)] for _ in range(6)]

    async def one_connection(group: list[str]) -> list[str]:
        fnr = random_national_number()
        return await exchange(
            listener.port, [oml(control_id=unique("C"), placer=p, fnr=fnr) for p in group]
        )

    async def all_connections() -> list[list[str]]:
        return await asyncio.gather(*(one_connection(group) for group in placers))

    answers = asyncio.run(all_connections())
    assert all(msa(a)[0] == "AA" for group in answers for a in group)
    with committing() as session:
        for group in placers:
            for placer in group:
                assert orders.find_by_placer(session, placer, "EPIC") is not None


def test_tls(committing: sessionmaker[Session], loop_thread: LoopThread, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server = Hl7Listener(
        Inbox(committing), host="127.0.0.1", port=0, tls=server_tls_context(cert, key)
    )
    loop_thread.run(server.start())
    try:
        client = ssl.create_default_context(cafile=str(cert))
        control_id = unique("C")
        message = oml(control_id=control_id, placer=unique("P"), fnr=random_national_number())
        [ack] = asyncio.run(exchange(server.bound_port, [message], ssl=client))
        assert msa(ack) == ("AA", control_id)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            asyncio.run(exchange(server.bound_port, [message]))  # plain text is refused
    finally:
        loop_thread.run(server.stop())


class DiesAfterCommit(Inbox):
    """The process dies between the commit and the ACK (the first time only)."""

    died = False

    def store(self, raw: bytes, *, caller: Caller | None = None) -> Stored:
        stored = super().store(raw, caller=caller)  # stored and processed in one transaction
        if not DiesAfterCommit.died:
            DiesAfterCommit.died = True
            raise RuntimeError("killed between commit and ACK")
        return stored


def test_killed_between_commit_and_ack_then_resent(
    committing: sessionmaker[Session], loop_thread: LoopThread
) -> None:
    server = Hl7Listener(DiesAfterCommit(committing), host="127.0.0.1", port=0)
    loop_thread.run(server.start())
    try:
        control_id, placer = unique("C"), unique("P")
        message = oml(control_id=control_id, placer=placer, fnr=random_national_number())
        with pytest.raises(ClosedBeforeAnswer):
            asyncio.run(exchange(server.bound_port, [message]))  # no ACK: the sender will resend
        [ack] = asyncio.run(exchange(server.bound_port, [message]))
        assert msa(ack) == ("AA", control_id)
    finally:
        loop_thread.run(server.stop())
    assert len(logged(committing, control_id)) == 1
    with committing() as session:
        order = orders.find_by_placer(session, placer, "EPIC")
        assert order is not None and len(order.tests) == 1
