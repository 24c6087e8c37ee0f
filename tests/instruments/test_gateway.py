"""The analyser runner's transaction per message (`LabGateway.handle`): no savepoint in the
common case, and a message whose storing fails handled again with a savepoint per specimen,
so the failure is kept as unmatched and the rest stored once."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from instruments import messages
from instruments.profiles import get_profile
from instruments.runner import LabGateway
from lab.tables import Result, ResultVersion, UnmatchedResult

from .conftest import new_specimens, tcp_instrument
from .test_conversation import results_of

HEADER = "H|\\^&|||GEN^1|||||||P|LIS2-A2|20261127081500"


def _message(tubes: list[tuple[str, list[tuple[str, str]]]]) -> list[bytes]:
    """H, P, then an O and its R records per tube, L: the records as the link delivers them."""
    lines = [HEADER, "P|1"]
    for number, (accession, results) in enumerate(tubes, start=1):
        codes = "\\".join(f"^^^{code}" for code, _ in results)
        lines.append(f"O|{number}|{accession}||{codes}|R||||||N||||||||||||||F")
        lines.extend(
            f"R|{index}|^^^{code}|{value}|mmol/L||N||F||||20261127081000"
            for index, (code, value) in enumerate(results, start=1)
        )
    lines.append("L|1|N")
    return [line.encode("latin-1") for line in lines]


@pytest.fixture
def statements(committing_engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def keep(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement.strip().split(None, 1)[0].upper())

    event.listen(committing_engine, "before_cursor_execute", keep)
    yield seen
    event.remove(committing_engine, "before_cursor_execute", keep)


def test_a_message_is_stored_without_a_savepoint(
    committing_factory: sessionmaker[Session], statements: list[str]
) -> None:
    serum = new_specimens(committing_factory, ["NA", "K"])["NA"]
    config = tcp_instrument(f"gw-{secrets.token_hex(3)}")
    raws = _message([(serum, [("NA", "141"), ("K", "4.1")])])
    statements.clear()

    outcome = LabGateway(committing_factory).handle(config, get_profile("generic"), raws)

    assert (outcome.recorded, outcome.unmatched) == (2, 0)
    assert "SAVEPOINT" not in statements and "RELEASE" not in statements
    assert statements[-2:] == ["WITH", "WITH"], statements  # the tube's read and write
    stored = results_of(committing_factory, serum)
    assert {code: str(r.value_numeric) for code, r in stored.items()} == {"NA": "141", "K": "4.1"}


def test_a_failing_tube_is_rolled_back_and_handled_again_with_savepoints(
    committing_factory: sessionmaker[Session],
    statements: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = new_specimens(committing_factory, ["NA", "K"])["NA"]
    second = new_specimens(committing_factory, ["NA", "K"])["NA"]
    config = tcp_instrument(f"gw-{secrets.token_hex(3)}")
    # The second tube's NA cannot be stored (a fault of ours); the first tube is written before
    # it in the first try, which is rolled back.
    raws = _message(
        [(first, [("NA", "140"), ("K", "4.0")]), (second, [("NA", "139.5"), ("K", "4.4")])]
    )
    original = messages.results.record_tube
    calls: list[int] = []

    def failing(session: Session, **kwargs: Any) -> Any:
        calls.append(len(kwargs["measurements"]))
        if any(m.value == "139.5" for m in kwargs["measurements"]):
            raise ValueError("cannot store this one")
        return original(session, **kwargs)

    monkeypatch.setattr(messages.results, "record_tube", failing)

    outcome = LabGateway(committing_factory).handle(config, get_profile("generic"), raws)

    # First try: tube one, then tube two fails. Again, guarded: tube one, tube two whole, then
    # each of its results alone.
    assert calls == [2, 2, 2, 2, 1, 1]
    assert "SAVEPOINT" in statements
    assert (outcome.recorded, outcome.unmatched) == (3, 1)
    stored_first = results_of(committing_factory, first)
    stored_second = results_of(committing_factory, second)
    assert sorted(stored_first) == ["K", "NA"] and sorted(stored_second) == ["K"]
    with committing_factory() as session:
        ids = [r.id for r in (*stored_first.values(), *stored_second.values())]
        versions = session.scalar(
            select(func.count()).select_from(ResultVersion).where(ResultVersion.result_id.in_(ids))
        )
        results = session.scalar(select(func.count()).select_from(Result).where(Result.id.in_(ids)))
        kept = session.scalars(
            select(UnmatchedResult.value).where(UnmatchedResult.instrument == config.name)
        ).all()
    assert (results, versions) == (3, 3)  # the first try left nothing behind
    assert kept == ["139.5"]
