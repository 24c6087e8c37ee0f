"""The `lab` command as an operator runs it: a real process against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from testkit.database import ScratchDatabase

COMMANDS = [
    [],
    ["serve"],
    ["db", "upgrade"],
    ["user", "add"],
    ["user", "password"],
    ["token", "create"],
    ["demo", "seed"],
    ["demo", "run"],  # in a checkout: the test kit is there
    ["catalog", "load"],
    ["rules"],
    ["rules", "load"],
    ["rules", "activate"],
    ["rules", "replay"],
]


def lab(
    *args: str, database_url: str | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if database_url:
        env["LAB_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "lab")
def test_help_says_what_each_command_does(command: list[str]) -> None:
    done = lab(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: lab" in done.stdout
    assert len(done.stdout.splitlines()) >= 3


def test_user_and_token(test_database: ScratchDatabase) -> None:
    url = test_database.url
    added = lab("user", "add", "cli-bio", "--role", "technician", database_url=url)
    assert added.returncode == 0, added.stderr
    assert "password (shown once)" in added.stdout
    titled = lab(
        "user", "add", "cli-lege", "--role", "physician", "--name", "Lise Lien",
        "--title", "overlege", database_url=url,
    )  # fmt: skip
    assert titled.returncode == 0, titled.stderr
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(
                text("SELECT display_name, title FROM lab_user WHERE username = 'cli-lege'")
            ).one() == ("Lise Lien", "overlege")
    finally:
        engine.dispose()
    again = lab("user", "add", "cli-bio", "--role", "technician", database_url=url)
    assert again.returncode == 2 and "exists already" in again.stderr
    bad = lab("user", "add", "cli-x", "--role", "wizard", database_url=url)
    assert bad.returncode == 2 and "roles" in bad.stderr
    token = lab("token", "create", "cli-bio", database_url=url)
    assert token.returncode == 0, token.stderr
    assert token.stdout.strip().splitlines()[-1].startswith("lab_")
    unknown = lab("token", "create", "nobody", database_url=url)
    assert unknown.returncode == 2


def test_db_upgrade_is_idempotent(test_database: ScratchDatabase) -> None:
    done = lab("db", "upgrade", database_url=test_database.url)
    assert done.returncode == 0, done.stderr
    assert "heads" in done.stdout


def test_without_the_test_kit_demo_offers_seed_only(tmp_path: Path) -> None:
    """As installed from the wheel (no testkit/): `lab demo` has `seed`, and no `run`."""
    checkout = str(Path(__file__).resolve().parent.parent)
    script = (
        "import sys; sys.path[:] = [p for p in sys.path if p not in ('', sys.argv[1])]; "
        "import importlib.util; assert importlib.util.find_spec('testkit') is None; "
        "import lab.cli; lab.cli.main(['demo', '--help'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, checkout],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "seed" in done.stdout and "run" not in done.stdout.split("COMMAND", 1)[1]
