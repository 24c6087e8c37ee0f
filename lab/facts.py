"""The facts every message asks about and that rarely change, checked with one short statement.

Every order and every analyser message needs the test catalog, the rule sets in force and the
analysers' QC locks. Reading them whole each time cost three statements and a tenth of a
message's CPU; they change a few times a day. So each transaction reads one stamp, the first
time it asks for any of them: the catalog's version (with the transaction that wrote it), the
active and shadow rule set versions (id, number, checksum), and the tests locked by QC on each
analyser. Whatever a process built from those facts (the catalog snapshot, the parsed rule
documents) is cached in the process under the stamp's parts, and built again when a part
differs. Nothing is ever told to forget: a change committed by any process on any node is in
the next stamp read, so the next transaction anywhere sees it (docs/capacity.md, "Facts that
rarely change").

A transaction that changes one of these facts itself calls `forget`: its next question reads
the stamp again and sees its own change. A savepoint rolled back forgets it too (what was
read inside may have been undone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, SessionTransaction

#: Separators of the stamp's lists: control characters no name or code holds.
FIELD, ROW = "\x1f", "\x1e"

# The rows (active/shadow rule sets, locked tests) are few: normally three and none.
#: The stamp's four columns over `catalog_version c` (`STAMP_FROM`), for a statement that
#: reads the stamp beside what it does (`remember` keeps what they hold).
STAMP_COLUMNS = """c.version AS stamp_version, c.xmin::text AS stamp_written_by,
    (SELECT string_agg(concat_ws(chr(31), r.kind, r.state, r.id, r.version, r.sha256),
                       chr(30) ORDER BY r.kind, r.state)
     FROM rule_set_version r WHERE r.state IN ('active', 'shadow')) AS stamp_rules,
    (SELECT string_agg(l.instrument || chr(31) || t.code, chr(30)
                       ORDER BY l.instrument, t.code)
     FROM qc_lock l JOIN lab_test t ON t.id = l.test_id
     WHERE l.state = 'locked') AS stamp_locks"""
STAMP_FROM = "catalog_version c WHERE c.id = 1"
_READ = text(f"SELECT {STAMP_COLUMNS} FROM {STAMP_FROM}")  # noqa: S608 - fixed text


@dataclass(frozen=True, slots=True)
class Stamp:
    """What the rarely changing facts are as of this transaction."""

    #: The catalog's version and the transaction that wrote it: a version number taken by a
    #: change that was rolled back may be taken again by another, never with the same writer.
    catalog: tuple[int, str]
    #: The active and shadow rule set versions: kind, state, id, version, sha256 (FIELD apart),
    #: ROW apart, in order of kind and state; "" when none.
    rules: str
    #: The locked tests: analyser name and test code (FIELD apart), ROW apart, sorted; "" when
    #: none.
    locks: str

    @property
    def catalog_version(self) -> int:
        return self.catalog[0]


_KEY = "lab_facts_stamp"


def stamp(session: Session) -> Stamp:
    """The stamp of this transaction: read with its first question, then kept until the
    transaction ends or changes one of the facts (`forget`)."""
    known: tuple[SessionTransaction, Stamp] | None = session.info.get(_KEY)
    if known is not None and known[0] is session.get_transaction():
        return known[1]
    version, written_by, rules, locks = session.execute(_READ).one()._tuple()
    return remember(session, version, written_by, rules, locks)


def remember(
    session: Session, version: int, written_by: str, rules: str | None, locks: str | None
) -> Stamp:
    """Keep as this transaction's stamp what a statement of it read in `STAMP_COLUMNS` (the
    transaction's first question, when it has to ask one anyway)."""
    found = Stamp(catalog=(int(version), str(written_by)), rules=rules or "", locks=locks or "")
    transaction = session.get_transaction()
    if transaction is not None:
        session.info[_KEY] = (transaction, found)
    return found


def forget(session: Session) -> None:
    """This transaction has changed the catalog, a rule set's state or a QC lock: its next
    question reads the stamp again."""
    session.info.pop(_KEY, None)


@event.listens_for(Session, "after_soft_rollback")
def _forget_after_rollback(session: Session, previous_transaction: Any) -> None:
    """Any rollback, a savepoint's too: what this transaction read may be undone."""
    forget(session)


@event.listens_for(Session, "after_commit")
def _forget_after_commit(session: Session) -> None:
    forget(session)


def database_of(session: Session) -> URL:
    """The database a session works on: the processes' caches keep one entry per database
    (tests and benchmarks use several in one process)."""
    return session.get_bind().engine.url
