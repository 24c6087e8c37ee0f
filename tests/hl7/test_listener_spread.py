"""Several intake processes on one MLLP socket (`AcceptSpread`): a process takes a new
connection only while no live process holds fewer, and a connection taken from the shared
socket is served like any other."""

from __future__ import annotations

import asyncio
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from lab.hl7.inbox import Stored
from lab.hl7.listener import AcceptSpread, Hl7Listener, bind_shared
from testkit.mllp import MllpConnection


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_process_waits_its_turn_while_a_live_one_holds_fewer(tmp_path: Path) -> None:
    path = tmp_path / "spread"
    AcceptSpread.make_file(path, 3)
    listening = bind_shared("127.0.0.1", 0)
    try:
        first = AcceptSpread(listening, path, index=0, count=3)
        second = AcceptSpread(listening, path, index=1, count=3)
        # Slot 2 is nobody's yet (pid 0): it does not count.
        assert first.may_accept() and second.may_accept()
        first.opened()
        assert not first.may_accept() and second.may_accept()
        second.opened()
        assert first.may_accept() and second.may_accept()
        second.opened()
        assert first.may_accept() and not second.may_accept()
        first.opened()
        first.closed()
        assert first.may_accept() and not second.may_accept()
        # A process that died holding nothing does not hold the others back.
        third = AcceptSpread(listening, path, index=2, count=3)
        assert not first.may_accept()
        third.close()
        with path.open("r+b") as raw:
            raw.seek(32)
            raw.write(struct.pack("qq", _dead_pid(), 0))
        assert first.may_accept()
        for spread in (first, second):
            spread.close()
    finally:
        listening.close()


class _AcceptAll:
    """An inbox that stores nothing and answers every message with one ACK."""

    def store(self, raw: bytes, *, caller: Any = None) -> Stored:
        return Stored(message_id=1, acks=(b"MSH|^~\\&|ACK\r",))


def test_a_connection_from_the_shared_socket_is_served_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "spread"
    AcceptSpread.make_file(path, 2)
    listening = bind_shared("127.0.0.1", 0)
    spread = AcceptSpread(listening, path, index=0, count=2)
    port = listening.getsockname()[1]

    async def main() -> None:
        listener = Hl7Listener(
            _AcceptAll(),  # type: ignore[arg-type]
            host="127.0.0.1",
            port=port,
            spread=spread,
        )
        await listener.start()
        try:
            assert listener.bound_port == port and listener.status()["state"] == "up"
            connection = await MllpConnection.open("127.0.0.1", port)
            assert await connection.exchange(b"MSH|^~\\&|A\r") == b"MSH|^~\\&|ACK\r"
            assert spread.open == 1 and listener.stats.connections_open == 1
            await connection.close()
            for _ in range(100):
                if spread.open == 0:
                    break
                await asyncio.sleep(0.02)
            assert spread.open == 0 and listener.stats.messages == 1
        finally:
            await listener.stop()
        assert listener.status()["state"] == "down"

    try:
        asyncio.run(main())
    finally:
        spread.close()
        listening.close()
