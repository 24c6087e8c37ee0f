"""Who may speak to an analyser port (issue 14): `allowed_peers`, one live connection per
server-mode analyser (a second is refused and alarmed), orders only to that connection, the
archive quota and the line's buffer caps. Real sockets, the real runner and archive."""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from instruments.archive import ArchiveFull, TrafficArchive
from instruments.astm.link import Role
from instruments.config import ConfigError, TcpSettings, parse_config
from instruments.profiles import get_profile
from instruments.runner import InstrumentRunner, LabGateway
from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp
from lab.peers import parse_networks

from .conftest import new_specimens, running, tcp_instrument


def _config(tcp_table: str, extra: str = "") -> str:
    head = '[[instrument]]\nname = "a1"\nprofile = "generic"\n'
    return f"{head}{extra}\n[instrument.tcp]\n{tcp_table}\n"


def test_a_server_bound_beyond_loopback_must_name_its_peers() -> None:
    import tomllib

    with pytest.raises(ConfigError, match="allowed_peers"):
        parse_config(tomllib.loads(_config('mode = "server"\nhost = "0.0.0.0"\nport = 5001')))
    [config] = parse_config(
        tomllib.loads(
            _config(
                'mode = "server"\nhost = "0.0.0.0"\nport = 5001',
                'allowed_peers = ["10.20.30.40", "10.21.0.0/24"]',
            )
        )
    )
    assert isinstance(config.transport, TcpSettings)
    assert config.transport.allowed_peers == parse_networks("10.20.30.40,10.21.0.0/24", setting="x")
    with pytest.raises(ConfigError, match="not an IP address"):
        parse_config(
            tomllib.loads(_config('mode = "server"\nport = 5001', 'allowed_peers = ["xs1.lab"]'))
        )
    [local] = parse_config(tomllib.loads(_config('mode = "server"\nport = 5001')))
    assert isinstance(local.transport, TcpSettings)
    assert local.transport.allowed_peers == parse_networks("", setting="x")  # loopback


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 3) == b""
    except ConnectionError:
        return True


def test_a_second_connection_is_refused_and_alarmed_while_the_first_goes_on(
    committing_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """Issue 14: an order download went to the newest connection, an intruder's."""
    tubes = new_specimens(committing_factory, ["HB"])

    async def scenario() -> tuple[bool, dict[str, object], dict[str, object], str]:
        async with running(tcp_instrument("one-line"), committing_factory, tmp_path) as runner:
            port = runner.listening_port
            assert port is not None
            analyser = VirtualAnalyser(profile=get_profile("generic"), rng=random.Random(3))
            async with analyser.on_line(await tcp.open_channel("127.0.0.1", port)):
                await asyncio.sleep(0.1)
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"\x05")  # an ENQ from the intruder: never read
                refused = await _closed_by_server(reader)
                writer.close()
                health = runner.status.health()
                status = runner.status.as_dict()
            # The first line kept working after the refusal.
            runs = await VirtualAnalyser(profile=get_profile("generic"), rng=random.Random(4)).run(
                await tcp.open_channel("127.0.0.1", port), [tubes["HB"]]
            )
            return refused, health, status, runs[0].outcome

    refused, health, status, outcome = asyncio.run(scenario())
    assert refused
    assert health["alarm"] == "second connection refused"
    assert "127.0.0.1" not in str(health)  # no addresses on /healthz
    assert status["refused"] == 1 and "127.0.0.1" in str(status["alarm_detail"])
    assert outcome == "accepted"


def test_a_peer_outside_allowed_peers_is_closed_unread_and_alarmed(
    committing_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    transport = TcpSettings(
        mode="server",
        host="127.0.0.1",
        port=0,
        allowed_peers=parse_networks("192.0.2.10", setting="allowed_peers"),
    )
    config = tcp_instrument("fenced", transport=transport, order_download=True)

    async def scenario() -> tuple[bool, dict[str, object], bool]:
        async with running(config, committing_factory, tmp_path) as runner:
            assert runner.listening_port is not None
            reader, writer = await asyncio.open_connection("127.0.0.1", runner.listening_port)
            writer.write(b"\x05\x021H|\\^&\r\x0300\r\n")
            refused = await _closed_by_server(reader)
            writer.close()
            pushed = await runner.push([])  # no admitted line: nowhere to send orders
            return refused, runner.status.health(), pushed

    refused, health, pushed = asyncio.run(scenario())
    assert refused and not pushed
    assert health["alarm"] == "connection from a peer not allowed"
    assert not list(tmp_path.glob("fenced/*.astm"))  # not a byte was archived


def test_the_archive_quota_closes_a_garbage_stream_and_raises_an_alarm(
    committing_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    archive = TrafficArchive(tmp_path, daily_quota_bytes=20_000)
    runner = InstrumentRunner(
        tcp_instrument("flooded"), gateway=LabGateway(committing_factory), archive=archive
    )

    async def scenario() -> bool:
        await runner.start()
        try:
            for _ in range(200):
                if runner.listening_port is not None:
                    break
                await asyncio.sleep(0.01)
            assert runner.listening_port is not None
            reader, writer = await asyncio.open_connection("127.0.0.1", runner.listening_port)
            garbage = bytes(random.Random(5).randrange(256) for _ in range(4096))
            try:
                for _ in range(100):
                    writer.write(garbage)
                    await writer.drain()
                    await asyncio.sleep(0.01)
            except ConnectionError:
                pass
            closed = await _closed_by_server(reader)
            writer.close()
            return closed
        finally:
            await runner.stop()
            archive.close()

    assert asyncio.run(scenario())
    assert runner.status.health()["alarm"] == "archive quota reached"
    [day] = list((tmp_path / "flooded").glob("*.astm"))
    assert day.stat().st_size <= 20_000
    with pytest.raises(ArchiveFull):
        archive.keep_now("flooded", Role.INSTRUMENT, b"x" * 30_000)


def test_a_frame_that_never_ends_closes_the_line(
    committing_factory: sessionmaker[Session],
) -> None:
    async def scenario() -> tuple[bool, str]:
        async with running(tcp_instrument("endless"), committing_factory) as runner:
            assert runner.listening_port is not None
            sock = socket.create_connection(("127.0.0.1", runner.listening_port))
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            try:
                await loop.sock_sendall(sock, b"\x05")
                await asyncio.sleep(0.1)
                await loop.sock_sendall(sock, b"\x021" + b"A" * (2 * 1024 * 1024))
                data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
                while data:
                    data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
                closed = True
            except ConnectionError:
                closed = True
            finally:
                sock.close()
            return closed, str(runner.status.as_dict()["alarm_detail"])

    closed, detail = asyncio.run(scenario())
    assert closed and "without a frame end" in detail
