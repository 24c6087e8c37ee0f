"""The rarely changing facts (`lab.facts`): one statement per transaction, and every change seen.

A second process (a worker, as `lab serve` runs several) answers from its own caches, warmed
before each change; the changes are committed by this process on its own connections. The
worker must see each one in its very next transaction, and ask no more than the one stamp
while nothing changes. A change made earlier in a transaction is seen by that transaction.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from lab.catalog import service as catalog
from lab.catalog.rules import snapshot
from lab.catalog.schemas import LabTestIn
from lab.db import make_engine, make_session_factory, transaction
from lab.qc import service as qc
from lab.rules.demo import demo_texts
from lab.rulesets import service as rulesets
from lab.tables.rulesets import RuleKind
from testkit.database import ScratchDatabase, create_database, drop_database
from tests.conftest import actor
from tests.qc.builders import na_run

ROOT = Path(__file__).resolve().parents[1]
PHYSICIAN = actor("physician", "t-physician")
ADMIN = actor("admin", "t-admin")

_WORKER = """
import json, sys
from sqlalchemy import event
from lab.catalog.rules import snapshot
from lab.db import make_engine, make_session_factory, transaction
from lab.qc import service as qc
from lab.rulesets.service import active_rules

engine = make_engine(sys.argv[1], pool_size=1)
factory = make_session_factory(engine)
sent = []
event.listen(engine, "before_cursor_execute", lambda *args: sent.append(1))
for _ in sys.stdin:
    sent.clear()
    with transaction(factory) as session:
        answers = []
        for _ in range(2):  # asked twice in one transaction: the second costs nothing
            answers.append((
                sorted(snapshot(session).by_code),
                active_rules(session).ids,
                sorted(qc.locked_tests(session, instrument="demo", test_codes=["NA", "K"])),
            ))
    assert answers[0] == answers[1]
    tests, rules, locked = answers[0]
    print(json.dumps({"tests": tests, "rules": rules, "locked": locked,
                      "statements": len(sent)}), flush=True)
"""


@pytest.fixture(scope="module")
def facts_database(database_server: str) -> Iterator[ScratchDatabase]:
    """A database of its own: this module commits catalog, rule set and QC changes."""
    database = create_database(database_server, "facts", role_users=True)
    yield database
    drop_database(database)


@pytest.fixture
def worker(facts_database: ScratchDatabase) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", _WORKER, facts_database.runtime_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    yield process
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=30)


def _ask(worker: subprocess.Popen[str]) -> dict[str, Any]:
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write("ask\n")
    worker.stdin.flush()
    line = worker.stdout.readline()
    assert line, "the worker stopped"
    answer: dict[str, Any] = json.loads(line)
    return answer


def _warm(worker: subprocess.Popen[str]) -> dict[str, Any]:
    """Ask until the worker's caches are warm: then one statement answers everything."""
    _ask(worker)
    answer = _ask(worker)
    assert answer["statements"] == 1
    return answer


def test_a_change_committed_elsewhere_is_in_the_next_transaction_of_every_process(
    facts_database: ScratchDatabase, worker: subprocess.Popen[str]
) -> None:
    engine = make_engine(facts_database.runtime_url, pool_size=1)
    factory = make_session_factory(engine)
    try:
        before = _warm(worker)
        assert before["rules"] == {} and before["locked"] == []

        with transaction(factory) as session:
            catalog.save_test(session, actor=ADMIN, data=_new_test("FACTX"))
        answer = _ask(worker)
        assert "FACTX" in answer["tests"] and "FACTX" not in before["tests"]
        assert answer["statements"] > 1  # the catalog read again, once
        _warm(worker)

        with transaction(factory) as session:
            rulesets.change_state(
                session, actor=PHYSICIAN, kind="autoverification", version=1, state="active"
            )
            first = rulesets.get(session, kind="autoverification", version=1).id
        assert _ask(worker)["rules"] == {"autoverification": first}
        _warm(worker)

        with transaction(factory) as session:
            document = demo_texts()[RuleKind.AUTOVERIFICATION.value] + "\n# second version\n"
            second = rulesets.load(
                session, actor=PHYSICIAN, kind="autoverification", document=document
            ).id
        assert _warm(worker)["rules"] == {"autoverification": first}  # a draft changes nothing
        with transaction(factory) as session:
            rulesets.change_state(
                session, actor=PHYSICIAN, kind="autoverification", version=2, state="active"
            )
        assert _ask(worker)["rules"] == {"autoverification": second}
        _warm(worker)

        with transaction(factory) as session:
            na_run(session, 3.4, 0.3)  # rejected: NA locked on demo
        assert _ask(worker)["locked"] == ["NA"]
        assert _warm(worker)["locked"] == ["NA"]
        with transaction(factory) as session:
            na_run(session, 0.1, -0.2, minute=10)  # both levels in control: unlocked
        assert _ask(worker)["locked"] == []
    finally:
        engine.dispose()


def _new_test(code: str) -> LabTestIn:
    return LabTestIn.model_validate(
        {
            "code": code,
            "name_nb": "Faktaprøve",
            "name_en": "Facts test",
            "specimen_type": "SER",
            "container": "SERUM",
            "unit": "mmol/L",
        }
    )


def test_a_change_made_earlier_in_a_transaction_is_seen_by_it(db: Session) -> None:
    statements: list[str] = []
    connection = db.connection()
    event.listen(connection, "before_cursor_execute", lambda *args: statements.append(args[2]))
    assert rulesets.active_rules(db).ids == {}
    assert not qc.is_locked(db, instrument="demo", test_code="NA")
    asked = len(statements)
    assert rulesets.active_rules(db).ids == {}  # asked again: no statement
    assert not qc.is_locked(db, instrument="demo", test_code="K")
    assert len(statements) == asked

    rulesets.change_state(db, actor=PHYSICIAN, kind="reflex", version=1, state="active")
    assert set(rulesets.active_rules(db).ids) == {"reflex"}
    na_run(db, 3.4, 0.3)
    assert qc.is_locked(db, instrument="demo", test_code="NA")
    catalog.save_test(db, actor=ADMIN, data=_new_test("FACTY"))
    assert "FACTY" in snapshot(db).by_code


def test_a_savepoint_rolled_back_takes_its_changes_with_it(db: Session) -> None:
    assert not qc.is_locked(db, instrument="demo", test_code="NA")
    with db.begin_nested() as savepoint:
        na_run(db, 3.4, 0.3)
        rulesets.change_state(db, actor=PHYSICIAN, kind="reflex", version=1, state="active")
        assert qc.is_locked(db, instrument="demo", test_code="NA")
        assert set(rulesets.active_rules(db).ids) == {"reflex"}
        savepoint.rollback()
    assert not qc.is_locked(db, instrument="demo", test_code="NA")
    assert rulesets.active_rules(db).ids == {}


def test_a_new_transaction_of_the_same_session_asks_again(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        assert rulesets.active_rules(session).ids == {}
        session.commit()  # (a savepoint released: the test's transaction is rolled back)
        rulesets.change_state(session, actor=PHYSICIAN, kind="reflex", version=1, state="active")
        session.commit()
        assert set(rulesets.active_rules(session).ids) == {"reflex"}
