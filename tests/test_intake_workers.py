"""Intake on several processes (lab/intake.py), tested on a real `lab serve` with LAB_WORKERS=2:
the HL7 listener shares its port between the processes, the analysers are shared out, a child
that is killed is started again, and nothing acknowledged is lost meanwhile."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from testkit.database import ScratchDatabase, create_database, drop_database
from testkit.mllp import ack_code, send_hl7
from testkit.orders import oml_o21
from testkit.patients import synthetic_patients
from testkit.process import LabProcess, free_port

pytestmark = pytest.mark.slow

CONNECTIONS = 24  # all on one process by chance: 2 in 2**24


@pytest.fixture(scope="module")
def database(database_server: str) -> Iterator[ScratchDatabase]:
    made = create_database(database_server, "intake", role_users=True)
    yield made
    drop_database(made)


def _instruments(folder: Path, ports: list[int]) -> Path:
    path = folder / "instruments.toml"
    path.write_text(
        "".join(
            f'[[instrument]]\nname = "line{n}"\nprofile = "generic"\n'
            f'[instrument.tcp]\nmode = "server"\nhost = "127.0.0.1"\nport = {port}\n'
            for n, port in enumerate(ports)
        )
    )
    return path


def _wait_for(lab: LabProcess, ready: Any, wait: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        health = lab.wait_healthy(30)
        if ready(health.get("components", {})):
            return health
        time.sleep(0.3)
    raise AssertionError(f"not ready in {wait:.0f} s: {health}")


def _child_up(components: dict[str, Any]) -> bool:
    return bool(components.get("intake_worker@1", {}).get("state") == "up")


async def _send_orders(port: int, label: str, count: int) -> dict[str, str]:
    patients = synthetic_patients(count, seed=abs(hash(label)) % 10_000)
    messages = {
        f"{label}{n:04d}": oml_o21(
            control_id=f"{label}{n:04d}", placer=f"{label}{n:04d}", patient=p, tests=["HB"]
        )
        for n, p in enumerate(patients)
    }
    names = list(messages)
    answers: dict[str, str] = {}

    async def one_connection(part: list[str]) -> None:
        acks = await send_hl7("127.0.0.1", port, [messages[name] for name in part])
        answers.update(zip(part, map(ack_code, acks), strict=True))

    await asyncio.gather(*(one_connection(names[i::CONNECTIONS]) for i in range(CONNECTIONS)))
    return answers


def _stored(url: str, label: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT placer_order_number, count(*) FROM lab_order "
                "WHERE placer_order_number LIKE :p GROUP BY 1"
            ),
            {"p": f"{label}%"},
        ).all()
    engine.dispose()
    return {str(placer): int(count) for placer, count in rows}


def test_two_intake_processes_share_the_listener_and_survive_a_killed_child(
    database: ScratchDatabase, tmp_path: Path
) -> None:
    mllp = free_port()
    lab = LabProcess(
        env={
            "LAB_DATABASE_URL": database.url,
            "LAB_DATA_DIR": str(tmp_path / "var"),
            "LAB_MLLP_PORT": str(mllp),
            "LAB_WORKERS": "2",
            "LAB_INSTRUMENTS_FILE": str(_instruments(tmp_path, [free_port(), free_port()])),
        },
        http_port=free_port(),
        log_path=tmp_path / "lab-serve.log",
    )
    lab.start()
    try:
        # Analyser i runs in worker i mod 2: line0 here, line1 in the child.
        def line1_up(components: dict[str, Any]) -> bool:
            line1 = components.get("instrument:line1@1", {})
            return _child_up(components) and line1.get("state") == "up"

        components = _wait_for(lab, line1_up)["components"]
        assert components["instrument:line0"]["state"] == "up"
        assert "instrument:line1" not in components
        # The API lists every analyser, with the state of the one the child runs.
        listed = httpx.get(
            f"{lab.base}/api/v1/instruments",
            headers={"Authorization": f"Bearer {database.tokens['technician']}"},
        ).json()
        assert {i["name"]: (i["running"], i["status"]["state"]) for i in listed} == {
            "line0": (True, "listening"),
            "line1": (True, "listening"),
        }

        answers = asyncio.run(_send_orders(mllp, "IW", 96))
        assert set(answers.values()) == {"AA"}
        stored = _stored(database.url, "IW")
        assert len(stored) == 96 and set(stored.values()) == {1}

        # Both processes took connections (the status files are at most a second old).
        def both_served(components: dict[str, Any]) -> bool:
            here = components.get("hl7_listener", {}).get("messages", 0)
            there = components.get("hl7_listener@1", {}).get("messages", 0)
            return bool(here > 0 and there > 0 and here + there == 96)

        _wait_for(lab, both_served, wait=10)

        # Connections held open are spread evenly: each process takes a new one only while it
        # holds no more than the other (SO_REUSEPORT's hash put all 4 in one process at times).
        async def hold_four() -> None:
            held = [await asyncio.open_connection("127.0.0.1", mllp) for _ in range(4)]
            try:

                def two_each(components: dict[str, Any]) -> bool:
                    here = components.get("hl7_listener", {}).get("connections")
                    there = components.get("hl7_listener@1", {}).get("connections")
                    return bool(here == 2 and there == 2)

                await asyncio.to_thread(_wait_for, lab, two_each, 10)
            finally:
                for _reader, writer in held:
                    writer.close()

        asyncio.run(hold_four())

        # A killed child is seen as down, started again, and the port keeps answering.
        _wait_for(lab, _child_up)
        # Process ids are internal detail: /healthz shows them to a signed-in caller only.
        signed_in = {"Authorization": f"Bearer {database.tokens['technician']}"}

        def child() -> dict[str, Any]:
            health = httpx.get(f"{lab.base}/healthz", headers=signed_in, timeout=10).json()
            worker: dict[str, Any] = health["components"]["intake_worker@1"]
            return worker

        pid = child()["pid"]
        os.kill(pid, signal.SIGKILL)
        _wait_for(lab, lambda c: c.get("intake_worker@1", {}).get("state") != "up", wait=10)
        answers = asyncio.run(_send_orders(mllp, "IX", 48))  # while it is away
        assert set(answers.values()) == {"AA"}
        _wait_for(lab, _child_up)
        restarted = child()
        assert restarted["pid"] != pid and restarted["restarts"] == 1
        assert set(_stored(database.url, "IX").values()) == {1}
    finally:
        assert lab.stop() == 0
    # Stopping worker 0 stops its children too.
    log = (tmp_path / "lab-serve.log").read_text()
    assert "Traceback" not in log, log[-3000:]
