"""Smoke test on the embedded PostgreSQL that `make run` uses when no server is configured."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.embedded, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_lab_serve_on_embedded_postgres(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    env.update(
        LAB_DATA_DIR=str(tmp_path / "var"),
        LAB_DEMO="1",
        LAB_DEMO_PASSWORD="embedded demo pw",
        LAB_HTTP_PORT=str(port),
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        health = None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                if server.poll() is not None:
                    break
                time.sleep(0.5)
        assert health is not None, server.communicate(timeout=5)[0]
        assert health.status_code == 200 and health.json()["database"]["state"] == "up"
        assert (tmp_path / "var" / "postgres" / "PG_VERSION").exists()
        token_run = subprocess.run(
            [sys.executable, "-m", "lab.cli", "token", "create", "bio"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        token = token_run.stdout.strip().splitlines()[-1]
        tests = httpx.get(
            f"{base}/api/v1/catalog/tests", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert {t["code"] for t in tests} >= {"HB", "LPK", "TPK", "NA", "K", "KREA", "CRP", "GLUK"}
    finally:
        os.killpg(server.pid, signal.SIGINT)
        output = server.communicate(timeout=30)[0]
    assert "demo user bio" in output
