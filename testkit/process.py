"""`lab serve` as a child process on a database, with its own ports, analysers and record.

`LabProcess` starts it (`python -m lab.cli serve`, settings from the environment only: no `LAB_`
variable of the caller leaks in), waits for `/healthz`, and stops it with SIGINT (Ctrl-C) or
kills it with SIGKILL (a crash). `running_lab` adds what a whole-flow run needs around it:
free ports, analysers on TCP or a pseudo-terminal, and a fake record to send results to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from testkit.api import make_token
from testkit.record import FakeRecord
from testkit.serial import PtyLine


def free_port(preferred: int = 0) -> int:
    """`preferred` or the next free port after it (0: any free port the kernel gives)."""
    for port in range(preferred, preferred + 100) if preferred else [0]:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise OSError(f"no free port from {preferred}")


# Example cobas c311 application codes (as docs/analysers.md: a real analyser has its own) for
# the demo catalog's chemistry.
COBAS_TESTS = {"989": "NA", "990": "K", "767": "KREA", "685": "CRP", "690": "GLUK"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Analyser:
    """One `[[instrument]]` of an instruments file (docs/analysers.md): a TCP server line or a
    serial line. Without `tests` the analyser sends the lab's own codes (`local_codes`)."""

    name: str
    profile: str = "generic"
    line: Literal["tcp", "serial"] = "tcp"
    tests: Mapping[str, str] = field(default_factory=dict)  # analyser code -> lab code
    serum_indices: Mapping[str, str] = field(default_factory=dict)  # h/i/l -> analyser code

    def toml(self, *, port: int = 0, path: str = "") -> str:
        text = f'[[instrument]]\nname = "{self.name}"\nprofile = "{self.profile}"\n'
        if not self.tests:
            text += "local_codes = true\n"
        if self.serum_indices:
            text += (
                "serum_indices = { "
                + ", ".join(f'{key} = "{code}"' for key, code in self.serum_indices.items())
                + " }\n"
            )
        if self.line == "tcp":
            text += f'[instrument.tcp]\nmode = "server"\nhost = "127.0.0.1"\nport = {port}\n'
        else:
            text += f'[instrument.serial]\nport = "{path}"\nbaudrate = 9600\n'
        if self.tests:
            text += "[instrument.tests]\n" + "".join(
                f'"{code}" = "{lab_code}"\n' for code, lab_code in self.tests.items()
            )
        return text


@dataclass(slots=True, kw_only=True)
class LabProcess:
    """`lab serve` as a child process with its own settings (ports, files, roles)."""

    env: dict[str, str]
    http_port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def running(self) -> bool:
        """Started and not ended (the same process all along, when it was never restarted)."""
        return self.process is not None and self.process.poll() is None

    def start(self, *, wait: float = 90.0) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
        environment.update(self.env, LAB_HTTP_PORT=str(self.http_port))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lab.cli", "serve"],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_healthy(wait)

    def wait_healthy(self, wait: float) -> dict[str, Any]:
        """`/healthz` once it answers; RuntimeError with the log's tail if it never does."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            with (
                contextlib.suppress(OSError, ValueError, urllib.error.URLError),
                urllib.request.urlopen(self.base + "/healthz", timeout=2) as answer,  # noqa: S310
            ):
                health: dict[str, Any] = json.loads(answer.read())
                return health
            time.sleep(0.2)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"lab serve did not come up on {self.base}:\n{tail}")

    def stop(self, how: signal.Signals = signal.SIGINT, wait: float = 30.0) -> int | None:
        """Stop it (SIGINT: Ctrl-C; SIGKILL: a crash, the whole process group); its exit
        status."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return process.returncode if process is not None else None
        os.killpg(process.pid, how) if how is signal.SIGKILL else process.send_signal(how)
        try:
            return process.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            return process.wait(10)

    def kill(self) -> int | None:
        return self.stop(signal.SIGKILL)


def lab_env(
    *,
    database_url: str,
    data_dir: Path,
    mllp_port: int,
    instruments_file: Path,
    record_port: int | None = None,
) -> dict[str, str]:
    """The settings of a `lab serve` on loopback (docs/install.md names each)."""
    env = {
        "LAB_DATABASE_URL": database_url,
        "LAB_DATA_DIR": str(data_dir),
        "LAB_MLLP_PORT": str(mllp_port),
        "LAB_INSTRUMENTS_FILE": str(instruments_file),
    }
    if record_port is not None:
        env["LAB_EHR_MLLP_URL"] = f"mllp://127.0.0.1:{record_port}"
    return env


@dataclass(slots=True, kw_only=True)
class Lab:
    """A running `lab serve` with its ports, serial lines and record."""

    process: LabProcess
    url: str
    mllp_port: int
    astm_ports: dict[str, int]  # TCP analyser name -> port
    ptys: dict[str, PtyLine]  # serial analyser name -> its line
    record: FakeRecord | None
    folder: Path

    @property
    def base(self) -> str:
        return self.process.base

    @property
    def astm_port(self) -> int:
        """The port of the first TCP analyser."""
        return next(iter(self.astm_ports.values()))

    @property
    def pty(self) -> PtyLine | None:
        """The line of the first serial analyser."""
        return next(iter(self.ptys.values()), None)

    def restart(self, how: signal.Signals = signal.SIGINT) -> int | None:
        status = self.process.stop(how)
        self.process.start()
        return status

    def token(self, username: str) -> str:
        return make_token(self.url, username)


TCP_ANALYSER = Analyser(name="tcp")


@asynccontextmanager
async def running_lab(
    url: str,
    folder: Path,
    *,
    analysers: Sequence[Analyser] = (TCP_ANALYSER,),
    record: FakeRecord | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> AsyncIterator[Lab]:
    """`lab serve` on database `url` with work files under `folder`: each analyser on a free
    TCP port or a new pseudo-terminal, results to `record` (started here) when given."""
    folder.mkdir(parents=True, exist_ok=True)
    astm_ports = {a.name: free_port() for a in analysers if a.line == "tcp"}
    ptys: dict[str, PtyLine] = {}
    process: LabProcess | None = None
    try:
        ptys.update((a.name, PtyLine()) for a in analysers if a.line == "serial")
        instruments = folder / "instruments.toml"
        instruments.write_text(
            "\n".join(
                a.toml(
                    port=astm_ports.get(a.name, 0), path=ptys[a.name].path if a.name in ptys else ""
                )
                for a in analysers
            )
        )
        env = lab_env(
            database_url=url,
            data_dir=folder / "var",
            mllp_port=free_port(),
            instruments_file=instruments,
            record_port=await record.start() if record is not None else None,
        )
        env.update(extra_env or {})
        process = LabProcess(env=env, http_port=free_port(), log_path=folder / "lab-serve.log")
        await asyncio.to_thread(process.start)
        yield Lab(
            process=process,
            url=url,
            mllp_port=int(env["LAB_MLLP_PORT"]),
            astm_ports=astm_ports,
            ptys=ptys,
            record=record,
            folder=folder,
        )
    finally:
        if process is not None:
            await asyncio.to_thread(process.stop)
        if record is not None:
            await record.stop()
        for pty in ptys.values():
            pty.close()
