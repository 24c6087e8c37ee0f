"""JSON routes of the analyser side under /api/v1/instruments (thin: parse, call, return)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from instruments import service
from instruments.config import InstrumentConfig, load_instruments
from instruments.profiles import PROFILES
from lab.deps import ReadPatientData, ReadWorklist, ResolveUnmatched, SessionDep, ViewAnalysers
from lab.errors import NotFound
from lab.results import queries as result_queries

router = APIRouter(prefix="/api/v1/instruments", tags=["instruments"])


class InstrumentOut(BaseModel):
    name: str
    profile: str
    profile_document: str
    transport: str
    order_download: bool
    running: bool
    status: dict[str, Any]


class UnmatchedOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    instrument: str
    received_at: datetime
    specimen_id: str
    instrument_test_code: str
    test_code: str | None
    value: str
    unit: str
    instrument_flags: str
    result_status: str
    operator: str
    observed_at: datetime | None
    reason: str
    reason_code: str = Field(
        default="", description="the reason as a stable name, to translate with reason_params"
    )
    reason_params: dict[str, str] = Field(default_factory=dict)
    raw_record: str
    raw_message: str  # the whole message the result came in
    status: str
    handled_at: datetime | None
    handled_by: str | None
    handling_note: str
    result_id: int | None


class ResolveIn(BaseModel):
    accession_number: str = Field(min_length=1, max_length=40)
    test_code: str = Field(min_length=1, max_length=20)
    note: str = ""
    unit: str | None = Field(
        default=None,
        max_length=40,
        description="The UCUM unit to read the value in, when the analyser wrote its unit "
        "otherwise (e.g. 10*3/uL for x10^3/uL); converted to the catalog's unit, the "
        "analyser's value and unit kept as the original.",
    )


class DiscardIn(BaseModel):
    reason: str = Field(min_length=1)


class ResolvedOut(BaseModel):
    unmatched: UnmatchedOut
    result_id: int
    changed: bool


class QcOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    instrument: str
    received_at: datetime
    control_id: str
    instrument_test_code: str
    test_code: str | None
    value: str
    unit: str
    instrument_flags: str
    result_status: str
    operator: str
    observed_at: datetime | None


class WorklistEntryOut(BaseModel):
    accession_number: str
    test_codes: list[str]
    priority: str


def configs_and_runners(request: Request) -> tuple[list[InstrumentConfig], dict[str, Any]]:
    running = getattr(request.app.state, "instruments", None)
    if running is not None:
        return running.configs(), running.runners
    return load_instruments(request.app.state.settings), {}


@router.get("", response_model=list[InstrumentOut])
def list_instruments(request: Request, actor: ViewAnalysers) -> list[InstrumentOut]:
    """Every configured analyser and the state of its line."""
    configs, runners = configs_and_runners(request)
    workers = getattr(request.app.state, "intake_workers", None)
    out = []
    for config in configs:
        runner = runners.get(config.name)
        # An analyser run by an intake child (lab/intake.py): its state as the child reports it.
        elsewhere = workers.instrument_status(config.name) if workers is not None else None
        status = (
            runner.status.as_dict()
            if runner is not None
            else elsewhere
            if elsewhere is not None
            else {"state": "not running"}
        )
        out.append(
            InstrumentOut(
                name=config.name,
                profile=config.profile,
                profile_document=PROFILES[config.profile].document,
                transport=config.transport.describe(),
                order_download=config.order_download,
                running=runner is not None or elsewhere is not None,
                status=status,
            )
        )
    return out


@router.get("/unmatched", response_model=list[UnmatchedOut])
def list_unmatched(
    session: SessionDep,
    actor: ReadPatientData,
    status: Annotated[str | None, Query(pattern="^(open|resolved|discarded)$")] = "open",
    instrument: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[Any]:
    """Results an analyser sent that could not be recorded, oldest first, with the reason and
    the whole message each came in. The look is audited."""
    rows = service.list_unmatched(session, status=status, instrument=instrument, limit=limit)
    service.note_read(session, actor=actor, rows=rows)
    return rows


@router.post("/unmatched/{unmatched_id}/resolve", response_model=ResolvedOut)
def resolve_unmatched(
    unmatched_id: int, data: ResolveIn, session: SessionDep, actor: ResolveUnmatched
) -> ResolvedOut:
    """Assign the result to a specimen and test; it is recorded as the analyser sent it."""
    outcome = service.resolve(
        session,
        actor=actor,
        unmatched_id=unmatched_id,
        accession_number=data.accession_number,
        test_code=data.test_code,
        note=data.note,
        unit=data.unit,
    )
    return ResolvedOut(
        unmatched=UnmatchedOut.model_validate(service.get_unmatched(session, unmatched_id)),
        result_id=result_queries.stored(session, outcome).id,
        changed=outcome.changed,
    )


@router.post("/unmatched/{unmatched_id}/discard", response_model=UnmatchedOut)
def discard_unmatched(
    unmatched_id: int, data: DiscardIn, session: SessionDep, actor: ResolveUnmatched
) -> Any:
    row = service.discard(session, actor=actor, unmatched_id=unmatched_id, reason=data.reason)
    return row


@router.get("/qc", response_model=list[QcOut])
def list_qc(
    session: SessionDep,
    actor: ViewAnalysers,
    instrument: str | None = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[Any]:
    """Quality control results, newest first, apart from patient results."""
    return list(service.list_qc(session, instrument=instrument, since=since, limit=limit))


@router.get("/{name}/worklist", response_model=list[WorklistEntryOut])
def worklist(
    name: str, request: Request, session: SessionDep, actor: ReadWorklist
) -> list[WorklistEntryOut]:
    """Specimens in the lab with pending tests this analyser runs, in its own test codes."""
    configs, _ = configs_and_runners(request)
    config = next((c for c in configs if c.name == name), None)
    if config is None:
        raise NotFound(f"no analyser {name!r} is configured")
    return [
        WorklistEntryOut(
            accession_number=entry.accession_number,
            test_codes=list(entry.test_codes),
            priority=entry.priority,
        )
        for entry in service.worklist(session, instrument=config)
    ]
