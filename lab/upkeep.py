"""Database upkeep: is PostgreSQL keeping the planner's statistics of the lab's tables current?

The intake's statements are planned from table statistics that PostgreSQL's autovacuum keeps
(ANALYZE) as tables grow. Without it the planner keeps thinking a table of a million results
is empty and scans it whole on every analyser message, and the cost per message grows with
the data (docs/capacity.md, "Why PostgreSQL's cost per analyser message doubled at full
size"). Nothing fails: the service only gets slower every day. So `/healthz` says so.

`check` reads `pg_stat_user_tables`: a table whose rows changed since its last ANALYZE (manual
or automatic) are more than `factor` times what autovacuum would have waited for
(`autovacuum_analyze_threshold + autovacuum_analyze_scale_factor * reltuples`, PostgreSQL's
own rule, with `reltuples` the rows counted at the last ANALYZE or VACUUM: 50 + 10 % of them
by default) and at least `minimum` rows is *behind*. One table
behind is not yet a fault (autovacuum works one table at a time); the component raises an
alarm when a table is behind, naming the tables and whether autovacuum is on. The check holds
no lock and reads only counters: no patient data.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.orm import Session

from lab.lifespan import Starter, repeated

log = logging.getLogger(__name__)

#: How many times autovacuum's own threshold a table may drift before it counts as behind.
FACTOR = 3.0
#: Fewer changed rows than this never count (small tables are planned well enough).
MINIMUM = 50_000

_SETTINGS = text(
    "SELECT current_setting('autovacuum'), current_setting('track_counts'), "
    "current_setting('autovacuum_analyze_threshold')::float8, "
    "current_setting('autovacuum_analyze_scale_factor')::float8"
)
# A table's own storage parameters (ALTER TABLE ... SET (autovacuum_enabled = off, ...)) win
# over the server's; only the lab's schema is looked at.
_TABLES = text(
    """
    SELECT s.relname, s.n_live_tup, s.n_mod_since_analyze, greatest(c.reltuples, 0) AS counted,
           coalesce((SELECT option_value::boolean FROM pg_options_to_table(c.reloptions)
                     WHERE option_name = 'autovacuum_enabled'), true) AS enabled,
           (SELECT option_value::float8 FROM pg_options_to_table(c.reloptions)
            WHERE option_name = 'autovacuum_analyze_threshold') AS threshold,
           (SELECT option_value::float8 FROM pg_options_to_table(c.reloptions)
            WHERE option_name = 'autovacuum_analyze_scale_factor') AS scale_factor
    FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid
    WHERE s.schemaname = current_schema()
    ORDER BY s.n_mod_since_analyze DESC
    """
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TableBehind:
    name: str
    rows: int
    changed_since_analyze: int
    autovacuum_enabled: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class UpkeepReport:
    autovacuum: bool
    """The server's `autovacuum` and `track_counts` are both on (it needs the counts)."""
    behind: tuple[TableBehind, ...]

    @property
    def alarm(self) -> str:
        if not self.behind:
            return ""
        names = ", ".join(table.name for table in self.behind[:5])
        more = f" and {len(self.behind) - 5} more" if len(self.behind) > 5 else ""
        if not self.autovacuum:
            why = "autovacuum is off on the server"
        elif not all(table.autovacuum_enabled for table in self.behind):
            why = "autovacuum is turned off for some of these tables"
        else:
            why = "autovacuum is on but behind (long transactions, or too few workers)"
        return f"statistics out of date on {names}{more}: {why}; run ANALYZE (docs/operations.md)"

    def as_status(self) -> dict[str, Any]:
        return {
            "state": "up",
            "autovacuum": "on" if self.autovacuum else "off",
            "tables_behind": [table.name for table in self.behind],
            "alarm": self.alarm,
        }


def check(session: Session, *, factor: float = FACTOR, minimum: int = MINIMUM) -> UpkeepReport:
    autovacuum, track_counts, threshold, scale_factor = session.execute(_SETTINGS).one()
    behind = []
    for row in session.execute(_TABLES):
        own_threshold = threshold if row.threshold is None else row.threshold
        own_scale = scale_factor if row.scale_factor is None else row.scale_factor
        waits_for = own_threshold + own_scale * float(row.counted)
        changed = int(row.n_mod_since_analyze)
        if changed >= minimum and changed > factor * waits_for:
            behind.append(
                TableBehind(
                    name=str(row.relname),
                    rows=int(row.n_live_tup),
                    changed_since_analyze=changed,
                    autovacuum_enabled=bool(row.enabled),
                )
            )
    running = autovacuum == "on" and track_counts == "on"
    return UpkeepReport(autovacuum=running, behind=tuple(behind))


def starter(*, every: float = 300.0) -> Starter:
    """Checks every `every` seconds in a worker thread; `/healthz` shows the last answer."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        factory = app.state.session_factory
        last: dict[str, Any] = {"state": "starting"}

        def check_now() -> None:
            nonlocal last
            try:
                with factory() as session:
                    report = check(session)
            except Exception as error:  # the database may be away; /healthz says that already
                last = {"state": "up", "alarm": "", "error": type(error).__name__}
                return
            if report.alarm and not last.get("alarm"):
                log.warning("database upkeep: %s", report.alarm)  # table names only
            last = report.as_status()

        async with repeated(
            app, name="database_upkeep", every=every, work=check_now, status=lambda: last
        ):
            yield

    return run
