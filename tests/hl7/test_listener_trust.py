"""Who may speak to the HL7 listener: allowed peers, mutual TLS with sender mapping, caps and
deadlines (issue 14). Real sockets, real TLS (certificates made with the openssl command)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lab.errors import InvalidInput
from lab.hl7.inbox import Inbox
from lab.hl7.listener import Hl7Listener, ListenerLimits, server_tls_context
from lab.hl7.senders import CertificateSubject, SenderPolicy
from lab.patients import service as patients
from lab.peers import LOOPBACK, ConnectionGate, parse_networks
from lab.tables import INBOUND, Hl7Message
from testkit.patients import random_national_number
from tests.hl7.conftest import (
    LoopThread,
    adt,
    err_locations,
    exchange,
    fnr_cx,
    msa,
    oml,
    unique,
)


def rows_with(factory: sessionmaker[Session], text: str) -> list[Hl7Message]:
    with factory() as session:
        return list(
            session.scalars(
                select(Hl7Message).where(
                    Hl7Message.direction == INBOUND, Hl7Message.raw.contains(text.encode())
                )
            )
        )


# --- allowed peers -------------------------------------------------------------------------


def test_peer_lists_parse_addresses_and_cidrs_and_default_to_loopback() -> None:
    assert parse_networks("", setting="X") == LOOPBACK
    gate = ConnectionGate(allowed=parse_networks("10.1.0.0/16, 192.0.2.7", setting="X"))
    assert gate.allows("10.1.200.3") and gate.allows("192.0.2.7")
    assert gate.allows("::ffff:10.1.2.3")  # an IPv4 peer on a dual-stack socket
    assert not gate.allows("10.2.0.1") and not gate.allows("127.0.0.1")
    assert not gate.allows("not an address")
    with pytest.raises(InvalidInput):
        parse_networks("ehr.example.no", setting="LAB_MLLP_ALLOWED_PEERS")


def test_gate_caps_connections_per_listener_and_per_peer() -> None:
    gate = ConnectionGate(allowed=LOOPBACK, max_connections=3, max_per_peer=2)
    assert gate.admit("127.0.0.1") is None and gate.admit("127.0.0.1") is None
    refusal = gate.admit("127.0.0.1")
    assert refusal is not None and refusal.over_cap
    assert gate.admit("127.0.0.2") is None
    refusal = gate.admit("127.0.0.3")
    assert refusal is not None and refusal.over_cap  # the listener is full
    gate.release("127.0.0.1")
    assert gate.admit("127.0.0.3") is None
    stranger = gate.admit("192.0.2.1")
    assert stranger is not None and not stranger.over_cap
    assert gate.refused == 3


def test_a_forged_adt_from_an_unlisted_peer_is_closed_unread_and_logged(
    committing: sessionmaker[Session],
    loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 14: an ADT^A08 naming EPIC from any peer renamed a patient. Now a peer outside
    the allowed networks is closed before a byte is read, and nothing changes."""
    fnr = random_national_number()
    with committing() as session:
        session.commit()
    server = Hl7Listener(
        Inbox(committing),
        host="127.0.0.1",
        port=0,
        allowed_peers=parse_networks("192.0.2.0/24", setting="LAB_MLLP_ALLOWED_PEERS"),
    )
    loop_thread.run(server.start())
    control_id = unique("FORGED")
    forged = adt(control_id=control_id, event="A08", pid3=fnr_cx(fnr), family="Forfalsket")
    try:
        with caplog.at_level(logging.WARNING, logger="lab.hl7.listener"):
            with pytest.raises((EOFError, ConnectionError)):
                asyncio.run(exchange(server.bound_port, [forged]))
            deadline = time.monotonic() + 5
            while server.stats.refused_peers == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        loop_thread.run(server.stop())
    assert server.stats.refused_peers == 1 and server.stats.messages == 0
    assert any("refused connection from 127.0.0.1" in r.getMessage() for r in caplog.records)
    assert rows_with(committing, control_id) == []
    with committing() as session:
        assert patients.find_by_identifier(session, fnr, "FNR") is None


def test_loopback_is_allowed_by_default(
    committing: sessionmaker[Session], loop_thread: LoopThread
) -> None:
    server = Hl7Listener(Inbox(committing), host="127.0.0.1", port=0)
    loop_thread.run(server.start())
    try:
        control_id = unique("C")
        message = oml(control_id=control_id, placer=unique("P"), fnr=random_national_number())
        [ack] = asyncio.run(exchange(server.bound_port, [message]))
        assert msa(ack) == ("AA", control_id)
    finally:
        loop_thread.run(server.stop())
    [row] = rows_with(committing, control_id)
    assert "127.0.0.1:" in row.partner  # the peer address is in the message log


# --- mutual TLS ----------------------------------------------------------------------------


@dataclass
class Pki:
    server_cert: Path
    server_key: Path
    ca: Path
    epic: tuple[Path, Path]
    unmapped: tuple[Path, Path]
    foreign: tuple[Path, Path]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    return cert, key


def _signed(
    directory: Path, name: str, subject: str, ca: tuple[Path, Path], extension: str = ""
) -> tuple[Path, Path]:
    cert, key, request = (directory / f"{name}{suffix}" for suffix in (".pem", ".key", ".csr"))
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
        "-keyout", str(key), "-out", str(request),
    )  # fmt: skip
    extra: list[str] = []
    if extension:
        ext_file = directory / f"{name}.ext"
        ext_file.write_text(extension)
        extra = ["-extfile", str(ext_file)]
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-days", "2", "-out", str(cert), *extra,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = _ca(directory, "lab-test-ca")
    other_ca = _ca(directory, "someone-else")
    server = _signed(directory, "server", "/CN=127.0.0.1", ca, "subjectAltName=IP:127.0.0.1\n")
    return Pki(
        server_cert=server[0],
        server_key=server[1],
        ca=ca[0],
        epic=_signed(directory, "epic", "/O=Helse Midt-Norge/CN=epic.hmn.test", ca),
        unmapped=_signed(directory, "unmapped", "/CN=somebody.test", ca),
        foreign=_signed(directory, "foreign", "/CN=epic.hmn.test", other_ca),
    )


@pytest.fixture
def mtls_port(
    pki: Pki, committing: sessionmaker[Session], loop_thread: LoopThread
) -> Iterator[int]:
    server = Hl7Listener(
        Inbox(committing),
        host="127.0.0.1",
        port=0,
        tls=server_tls_context(pki.server_cert, pki.server_key, client_ca=pki.ca),
        senders=SenderPolicy(by_subject={"epic.hmn.test": ["EPIC^HMN"]}),
    )
    loop_thread.run(server.start())
    yield server.bound_port
    loop_thread.run(server.stop())


def _client(pki: Pki, identity: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if identity is not None:
        context.load_cert_chain(str(identity[0]), str(identity[1]))
    return context


def test_mutual_tls_lets_a_certificate_speak_as_its_mapped_sender(
    pki: Pki, mtls_port: int, committing: sessionmaker[Session]
) -> None:
    control_id = unique("C")
    message = oml(control_id=control_id, placer=unique("P"), fnr=random_national_number())
    [ack] = asyncio.run(exchange(mtls_port, [message], ssl=_client(pki, pki.epic)))
    assert msa(ack) == ("AA", control_id)
    [row] = rows_with(committing, control_id)
    assert row.status == "processed" and "CN=epic.hmn.test" in row.partner


def test_a_certificate_naming_another_sender_gets_ar_on_msh3_and_changes_nothing(
    pki: Pki, mtls_port: int, committing: sessionmaker[Session]
) -> None:
    fnr = random_national_number()
    control_id = unique("C")
    forged = adt(control_id=control_id, event="A08", pid3=fnr_cx(fnr)).replace(
        "|EPIC|HMN|", "|DIPS|HMN|"
    )
    for identity in (pki.epic, pki.unmapped):
        [ack] = asyncio.run(exchange(mtls_port, [forged], ssl=_client(pki, identity)))
        assert msa(ack) == ("AR", control_id)
        assert "MSH^1^3" in err_locations(ack)
    # An unmapped certificate may not even use the sender a mapped one may.
    epic = adt(control_id=unique("C"), event="A08", pid3=fnr_cx(fnr))
    [ack] = asyncio.run(exchange(mtls_port, [epic], ssl=_client(pki, pki.unmapped)))
    assert msa(ack)[0] == "AR"
    rows = rows_with(committing, control_id)
    assert len(rows) == 2 and all(r.status == "rejected" for r in rows)
    assert {"CN=epic.hmn.test" in r.partner or "CN=somebody.test" in r.partner for r in rows} == {
        True
    }
    with committing() as session:
        assert patients.find_by_identifier(session, fnr, "FNR") is None


@pytest.mark.parametrize("who", ["no certificate", "another CA"])
def test_mutual_tls_refuses_clients_without_a_certificate_from_the_ca(
    pki: Pki, mtls_port: int, who: str
) -> None:
    identity = None if who == "no certificate" else pki.foreign
    message = oml(control_id=unique("C"), placer=unique("P"), fnr=random_national_number())
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError)):
        asyncio.run(exchange(mtls_port, [message], ssl=_client(pki, identity)))


def test_certificate_subjects_read_from_peercert() -> None:
    subject = CertificateSubject.from_peercert(
        {"subject": ((("organizationName", "HMN"),), (("commonName", "epic"),))}
    )
    assert subject is not None and subject.common_name == "epic"
    assert subject.text == "O=HMN,CN=epic"
    policy = SenderPolicy(by_subject={"O=HMN,CN=epic": ["EPIC"]})
    caller = policy.caller("10.0.0.1:5000", subject)
    assert caller.may_send_as("EPIC", "ANY") and not caller.may_send_as("DIPS", "HMN")
    assert CertificateSubject.from_peercert(None) is None


# --- caps and deadlines --------------------------------------------------------------------


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except (TimeoutError, BlockingIOError):
        return False
    except ConnectionError:
        return True


def test_connections_beyond_the_caps_are_closed_at_once(
    committing: sessionmaker[Session], loop_thread: LoopThread
) -> None:
    server = Hl7Listener(
        Inbox(committing),
        host="127.0.0.1",
        port=0,
        limits=ListenerLimits(max_connections=10, max_connections_per_peer=3),
    )
    loop_thread.run(server.start())
    held = []
    try:
        for _ in range(3):
            held.append(socket.create_connection(("127.0.0.1", server.bound_port)))
        extra = socket.create_connection(("127.0.0.1", server.bound_port))
        assert _closed_by_server(extra, 5)
        assert not any(_closed_by_server(sock, 0.2) for sock in held)
        assert server.stats.refused_over_cap == 1
        extra.close()
    finally:
        for sock in held:
            sock.close()
        loop_thread.run(server.stop())


def test_a_held_connection_flood_stays_within_the_cap_and_bounded_memory(
    committing: sessionmaker[Session], loop_thread: LoopThread
) -> None:
    """Issue 14: 1,500 held connections took 2 GB. Each held connection here has sent half a
    megabyte of an unfinished message; the listener keeps at most its cap of them."""
    limits = ListenerLimits(max_connections=64, max_connections_per_peer=1500)
    server = Hl7Listener(Inbox(committing), host="127.0.0.1", port=0, limits=limits)
    loop_thread.run(server.start())
    process = psutil.Process(os.getpid())
    before = process.memory_info().rss
    chunk = b"\x0bMSH|" + b"x" * (512 * 1024)
    sockets: list[socket.socket] = []
    try:
        for _ in range(1500):
            sock = socket.create_connection(("127.0.0.1", server.bound_port))
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError, ConnectionError):
                sock.send(chunk)
            sockets.append(sock)
        time.sleep(1.0)
        grown = (process.memory_info().rss - before) / 1024 / 1024
        print(f"\n1500 held connections: {server.stats.connections_open} open, "
              f"{server.stats.refused_over_cap} refused, RSS grew {grown:.0f} MiB")  # fmt: skip
        assert server.stats.connections_open <= 64
        assert server.stats.refused_over_cap >= 1500 - 64
        assert grown < 200
    finally:
        for sock in sockets:
            sock.close()
        loop_thread.run(server.stop())


def test_idle_and_unfinished_messages_are_closed_at_their_deadlines(
    committing: sessionmaker[Session], loop_thread: LoopThread
) -> None:
    limits = ListenerLimits(idle_timeout=0.5, message_timeout=1.0)
    server = Hl7Listener(Inbox(committing), host="127.0.0.1", port=0, limits=limits)
    loop_thread.run(server.start())
    try:
        idle = socket.create_connection(("127.0.0.1", server.bound_port))
        started = time.monotonic()
        assert _closed_by_server(idle, 5) and time.monotonic() - started < 3
        # A message trickled one byte every 0.3 s never goes idle, but must end within 1 s.
        slow = socket.create_connection(("127.0.0.1", server.bound_port))
        started = time.monotonic()
        closed = False
        for byte in b"\x0bMSH|^~\\&|EPIC|HMN|LAB|STOLAV|2026||ADT^A08|X|P|2.5.1":
            try:
                slow.send(bytes([byte]))
            except ConnectionError:
                closed = True
                break
            if _closed_by_server(slow, 0.3):
                closed = True
                break
        assert closed and time.monotonic() - started < 4
        assert server.stats.timeouts == 2
    finally:
        loop_thread.run(server.stop())
