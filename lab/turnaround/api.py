"""`GET /api/v1/reports/turnaround`: the lab module's own share of the turnaround time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from lab.deps import CurrentActor, SessionDep
from lab.timeutil import utcnow
from lab.turnaround import service

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])


class SpanOut(BaseModel):
    count: int
    p50: float | None
    p90: float | None
    p99: float | None


class TurnaroundOut(BaseModel):
    since: datetime
    until: datetime | None
    analyser_to_stored: SpanOut
    """Seconds from an analyser's last frame of a result message to our ACK of it (sent only
    after the results were committed and so shown for review); one sample per message."""
    results_stored: int
    verified_to_record_ack: SpanOut
    """Seconds from the verification (or hold release) that queued an ORU^R01 to the record's
    accepting ACK of it; one sample per message."""


@router.get("/turnaround", response_model=TurnaroundOut)
def turnaround(
    session: SessionDep,
    actor: CurrentActor,
    since: Annotated[
        datetime | None, Query(description="ISO 8601 with offset; default 24 h ago")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="ISO 8601 with offset; default now")
    ] = None,
) -> TurnaroundOut:
    found = service.report(
        session, actor=actor, since=since or utcnow() - timedelta(hours=24), until=until
    )
    return TurnaroundOut(
        since=found.since,
        until=found.until,
        analyser_to_stored=SpanOut(**_fields(found.analyser_to_stored)),
        results_stored=found.results_stored,
        verified_to_record_ack=SpanOut(**_fields(found.verified_to_record_ack)),
    )


def _fields(span: service.Span) -> dict[str, float | int | None]:
    return {"count": span.count, "p50": span.p50, "p90": span.p90, "p99": span.p99}
