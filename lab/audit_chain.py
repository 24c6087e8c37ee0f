"""The audit chain: every audit row sealed into a hash chain, and the check of that chain.

The runtime role can only add audit rows (migration 0013_trust). The chain is for what the
database owner or a superuser could still do: change, remove or re-order rows. `seal` appends
to `audit_seal`, for each audit row not yet sealed, SHA-256 over the previous seal's hash and
the row's content; `verify` recomputes every link and says where the chain first breaks.

Why a sealing job and not a trigger: a trigger would have to read the last hash and so make
every transaction that writes an audit row wait for the one before it to commit (every result
from every analyser, one at a time). The job instead seals rows once they are surely committed:
a row whose inserting transaction (`audit_event.xact`) is older than the oldest transaction
of this database still running is committed for good, and a transaction that has not inserted
yet will get a later transaction id. Rows are sealed in id order among those; the chain's order
is the seal order (`audit_seal.seq`). The runtime role sees the transaction ids of its own
sessions in pg_stat_activity, and only it (and the owner) can insert audit rows.

Each round reads only the rows it may seal, not the whole trail: a round that took every row
below its horizon notes that horizon on its seals (`audit_seal.sealed_below`), and the next
round looks only at rows of transactions from there on (a BRIN index on `audit_event.xact`),
so its cost follows the rows written since, not the rows ever written (docs/capacity.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, exists, func, select, text
from sqlalchemy.orm import Session

from lab.db import insert_rows
from lab.tables import AuditEvent, AuditSeal

GENESIS = "0" * 64
#: One sealer at a time in the whole cluster of nodes (pg_advisory_xact_lock key).
_SEAL_LOCK = 0x1AB_A0D1
_SEALED = (
    AuditEvent.id,
    AuditEvent.at,
    AuditEvent.actor_user_id,
    AuditEvent.actor_name,
    AuditEvent.channel,
    AuditEvent.action,
    AuditEvent.entity_type,
    AuditEvent.entity_id,
    AuditEvent.patient_id,
    AuditEvent.before,
    AuditEvent.after,
    AuditEvent.detail,
    AuditEvent.via,
)
# The oldest transaction of this database still running (or, if none, the next to start):
# rows inserted by transactions older than that are all committed or gone. Transactions of
# other databases on the same server do not hold the sealing back.
_HORIZON = text(
    "SELECT (coalesce(min(x), pg_snapshot_xmax(pg_current_snapshot()))::text)::bigint "
    "FROM pg_snapshot_xip(pg_current_snapshot()) AS x WHERE xid(x) IN ("
    "SELECT backend_xid FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL)"
)
_UNSEALED = ~exists().where(AuditSeal.audit_id == AuditEvent.id)


# The encoder `json.dumps` would make for these arguments, made once (the sealer encodes every
# audit row; the text is the same).
_CANONICAL = json.JSONEncoder(
    sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
)


def row_content(row: Any) -> str:
    """The canonical text of an audit row that its seal covers."""
    at: datetime = row.at
    return _CANONICAL.encode(
        [
            row.id,
            at.astimezone(UTC).isoformat(),
            row.actor_user_id,
            row.actor_name,
            row.channel,
            row.action,
            row.entity_type,
            row.entity_id,
            row.patient_id,
            row.before,
            row.after,
            row.detail,
            row.via,
        ]
    )


def link(previous: str, row: Any) -> str:
    return hashlib.sha256((previous + row_content(row)).encode()).hexdigest()


def seal(session: Session, *, limit: int = 5000) -> int:
    """Seal up to `limit` committed, unsealed audit rows; returns how many. The caller commits."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SEAL_LOCK})
    horizon = session.scalar(_HORIZON)
    last = session.execute(
        text("SELECT chain_hash, sealed_below FROM audit_seal ORDER BY seq DESC LIMIT 1")
    ).one_or_none()
    # Every row of a transaction older than `floor` is sealed already (module docstring).
    floor = int(last.sealed_below or 0) if last is not None else 0
    rows = session.execute(
        select(*_SEALED)
        .where(AuditEvent.xact >= floor, AuditEvent.xact < horizon, _UNSEALED)
        .order_by(AuditEvent.id)
        .limit(limit)
    ).all()
    # Having taken every row below the horizon, this round moves the floor up to it; one cut
    # short by `limit` leaves it where it was.
    below = horizon if len(rows) < limit else floor
    chain = last.chain_hash if last is not None else GENESIS
    seals = []
    for row in rows:
        chain = link(chain, row)
        seals.append({"audit_id": row.id, "chain_hash": chain, "sealed_below": below})
    # One statement of the same text for any number of seals (it stays prepared).
    insert_rows(session, cast(Table, AuditSeal.__table__), seals)
    return len(seals)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainReport:
    sealed: int
    unsealed: int
    unsealed_old: int
    """Unsealed rows older than the grace period: the sealing job is not running, or a row
    was slipped in under an id the chain had passed."""
    broken_at: int | None
    """The first seal (`seq`) whose hash does not follow, or whose audit row is gone."""
    problem: str

    @property
    def intact(self) -> bool:
        return self.broken_at is None and self.unsealed_old == 0


def verify(session: Session, *, grace: timedelta = timedelta(minutes=10)) -> ChainReport:
    """Recompute the whole chain from the first seal."""
    chain = GENESIS
    sealed = 0
    broken_at: int | None = None
    problem = ""
    result = session.execute(
        select(AuditSeal.seq, AuditSeal.audit_id, AuditSeal.chain_hash, *_SEALED)
        .outerjoin(AuditEvent, AuditEvent.id == AuditSeal.audit_id)
        .order_by(AuditSeal.seq)
        .execution_options(yield_per=2000)
    )
    for row in result:
        sealed += 1
        if broken_at is not None:
            continue
        if row.id is None:
            broken_at, problem = row.seq, f"audit row {row.audit_id} is gone"
            continue
        chain = link(chain, row)
        if chain != row.chain_hash:
            broken_at = row.seq
            problem = f"audit row {row.audit_id} or an earlier seal was changed"
    unsealed, unsealed_old = session.execute(
        select(
            func.count(),
            func.count().filter(AuditEvent.at < func.now() - grace),
        ).where(_UNSEALED)
    ).one()
    return ChainReport(
        sealed=sealed,
        unsealed=int(unsealed),
        unsealed_old=int(unsealed_old),
        broken_at=broken_at,
        problem=problem,
    )
