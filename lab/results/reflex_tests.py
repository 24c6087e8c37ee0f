"""Reflex tests: the test a reflex rule adds to the tube whose result called for it, or the new
specimen asked for when that tube cannot serve the test; the record is told of the added test
at once (an order the record learns of, `lab.results.lab_added`).

Called by `lab.results.recording` while it decides a tube's results, in the same transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.catalog.rules import CatalogSnapshot
from lab.orders import service as orders
from lab.results import lab_added
from lab.results.tube import Tube, TubeTest
from lab.rules import ReflexRule
from lab.tables import Order, TestStatus


def add(
    session: Session,
    actor: Actor,
    tube: Tube,
    rule: ReflexRule,
    version: int,
    catalog_now: CatalogSnapshot,
    *,
    fired: set[str],
    source: int | None,
    now: datetime,
) -> str | None:
    """Add the reflex test of `rule` for a result of `tube` (stored as `source`, or new), once
    per result and rule (`fired`: the rules that fired on it already). Returns the note for the
    result's judgement, or None when nothing was added."""
    added = catalog_now.by_code.get(rule.add)
    if added is None:
        return None
    already = tube.ordered.get(added.id)
    if rule.id in fired or (already is not None and already.status != TestStatus.CANCELLED):
        return None  # never twice for one result; nothing to add when the test is on the tube
    order = session.get(Order, tube.root.order_id)
    assert order is not None  # foreign key
    if any(t.test_id == added.id and t.status != TestStatus.CANCELLED for t in order.tests):
        return None  # on the order already (on another tube)
    why = f"reflex {rule.id} (reflex set v{version})" + (f" on result {source}" if source else "")
    root = tube.orm_root(session)
    tube.settle_orm_tests(session)
    if lab_added.tube_serves(added, root):
        ordered = orders.add_by_rule(
            session, actor=actor, specimen=root, test_id=added.id, rule=why
        )
        tube.ordered[added.id] = TubeTest(
            id=ordered.id, test_id=ordered.test_id, status=ordered.status, stored=ordered.status
        )
        lab_added.tell_record(
            session,
            order=order,
            added=ordered,
            note=f"{rule.add} added by the lab: reflex {rule.id} on {rule.test}. "
            f"{rule.source}".strip(),
            new_specimen=None,
            now=now,
        )
        return f"{rule.add} added ({rule.source})".strip()
    # The tube cannot serve the test: a new specimen is asked for.
    ordered, new_tube = lab_added.add_on_new_specimen(
        session, actor=actor, order=order, test=added, rule=f"{why}; new specimen"
    )
    lab_added.tell_record(
        session,
        order=order,
        added=ordered,
        note=f"{rule.add} added by the lab: reflex {rule.id} on {rule.test}; the specimen at hand "
        f"cannot serve it: a new {added.specimen_type} specimen ({added.container}) is "
        f"needed, accession number {new_tube.accession_number}",
        new_specimen=new_tube,
        now=now,
    )
    return (
        f"{rule.add} needs a new specimen ({added.specimen_type}, {added.container}): "
        f"{new_tube.accession_number}"
    )
