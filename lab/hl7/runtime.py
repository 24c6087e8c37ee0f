"""The HL7 interface at run time: listener, dispatcher and scheduled jobs in the app lifespan.

`starter(settings)` gives `create_app(starters=[...])` what it runs: the MLLP listener on
`LAB_MLLP_HOST:LAB_MLLP_PORT` (TLS with `LAB_MLLP_TLS_CERT`/`LAB_MLLP_TLS_KEY`, client
certificates with `LAB_MLLP_TLS_CA`, peers from `LAB_MLLP_ALLOWED_PEERS`), and on an
APScheduler AsyncIOScheduler the dispatch loop (when `LAB_EHR_MLLP_URL` is set; else results
wait in the outbox) and the release of held orders. Both jobs are safe with a second process
running them (SKIP LOCKED, see dispatcher.py and release.py); what a dispatcher that is gone
had claimed is taken over at the next round (its claim number's lock went with it, see
dispatcher.py). `/healthz` shows `hl7_listener` and `hl7_outbox` (queued and dead counts, last
delivery, the dispatcher's claim number).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from lab.config import Settings
from lab.hl7.dispatcher import DeliveryPolicy, Dispatcher, Endpoint, MllpClient
from lab.hl7.inbox import Inbox
from lab.hl7.listener import AcceptSpread, Hl7Listener, ListenerLimits, server_tls_context
from lab.hl7.release import release_due, report_withdrawals
from lab.hl7.senders import SenderPolicy
from lab.lifespan import Starter
from lab.peers import parse_networks
from lab.tables import HL7_UNDELIVERED, OUTBOUND, Hl7Message, Hl7Status, Withdrawal

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    dispatch_every: float = 1.0
    release_every: float = 30.0
    withdrawals_every: float = 2.0
    """Tests that will not be done reach the outbox this soon (the contract says 30 s)."""


def outbox_counts(session_factory: sessionmaker[Session]) -> dict[str, int]:
    with session_factory() as session:
        rows = session.execute(
            select(Hl7Message.status, func.count())
            .where(
                Hl7Message.direction == OUTBOUND,
                Hl7Message.status.in_(HL7_UNDELIVERED),
            )
            .group_by(Hl7Message.status)
        ).all()
        waiting = session.scalar(
            select(func.count()).select_from(Withdrawal).where(Withdrawal.message_id.is_(None))
        )
    counts = {str(status): int(count) for status, count in rows}
    counts["withdrawals_waiting"] = int(waiting or 0)
    return counts


def _listener(
    settings: Settings, factory: sessionmaker[Session], *, spread: AcceptSpread | None
) -> Hl7Listener:
    """The MLLP listener as the settings describe it (peers, TLS, client certificates, caps)."""
    tls = None
    if settings.mllp_tls_cert and settings.mllp_tls_key:
        tls = server_tls_context(
            settings.mllp_tls_cert, settings.mllp_tls_key, client_ca=settings.mllp_tls_ca
        )
    elif settings.mllp_tls_ca is not None:
        from lab.errors import InvalidInput

        raise InvalidInput.field(
            "LAB_MLLP_TLS_CA", "client certificates need LAB_MLLP_TLS_CERT and LAB_MLLP_TLS_KEY"
        )
    return Hl7Listener(
        Inbox(factory),
        host=settings.mllp_host,
        port=settings.mllp_port,
        tls=tls,
        allowed_peers=parse_networks(settings.mllp_allowed_peers, setting="LAB_MLLP_ALLOWED_PEERS"),
        senders=SenderPolicy(by_subject=settings.mllp_tls_senders),
        limits=ListenerLimits(
            max_connections=settings.mllp_max_connections,
            max_connections_per_peer=settings.mllp_max_connections_per_peer,
            max_message_size=settings.mllp_max_message_bytes,
            idle_timeout=settings.mllp_idle_timeout_seconds,
            message_timeout=settings.mllp_message_timeout_seconds,
        ),
        spread=spread,
    )


def listener_starter(settings: Settings, *, spread: AcceptSpread | None) -> Starter:
    """Only the MLLP listener: what an intake child runs (lab/intake.py); the dispatcher and
    the release job run in worker 0."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        listener = _listener(settings, app.state.session_factory, spread=spread)
        await listener.start()
        app.state.components.register("hl7_listener", listener.status)
        try:
            yield
        finally:
            app.state.components.unregister("hl7_listener")
            await listener.stop()

    return run


def starter(
    settings: Settings,
    *,
    policy: DeliveryPolicy | None = None,
    timing: Timing | None = None,
    spread: AcceptSpread | None = None,
) -> Starter:
    timing = timing or Timing()

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        factory: sessionmaker[Session] = app.state.session_factory
        listener = _listener(settings, factory, spread=spread)
        await listener.start()
        dispatcher: Dispatcher | None = None
        if settings.ehr_mllp_url:
            delivery = policy or DeliveryPolicy()
            client = MllpClient(Endpoint.from_url(settings.ehr_mllp_url), policy=delivery)
            dispatcher = Dispatcher(factory, client, policy=delivery)
        scheduler = AsyncIOScheduler(timezone="UTC")

        async def dispatch() -> None:
            if dispatcher is not None:
                await dispatcher.drain()

        async def release() -> None:
            await asyncio.to_thread(release_due, factory)

        async def withdrawals() -> None:
            await asyncio.to_thread(report_withdrawals, factory)

        if dispatcher is not None:
            scheduler.add_job(
                dispatch,
                "interval",
                seconds=timing.dispatch_every,
                id="hl7_dispatch",
                max_instances=1,
                coalesce=True,
            )
        scheduler.add_job(
            release,
            "interval",
            seconds=timing.release_every,
            id="hl7_release",
            max_instances=1,
            coalesce=True,
        )
        scheduler.add_job(
            withdrawals,
            "interval",
            seconds=timing.withdrawals_every,
            id="hl7_withdrawals",
            max_instances=1,
            coalesce=True,
        )
        scheduler.start()

        def outbox_status() -> dict[str, Any]:
            counts = outbox_counts(factory)
            stats = dispatcher.stats if dispatcher is not None else None
            last = stats.last_delivery_at if stats is not None else None
            return {
                "state": "up" if dispatcher is not None else "waiting",
                "receiver": settings.ehr_mllp_url or None,
                "queued": counts.get(Hl7Status.QUEUED, 0) + counts.get(Hl7Status.FAILED, 0),
                "in_flight": counts.get(Hl7Status.SENT, 0),
                "dead": counts.get(Hl7Status.DEAD, 0),
                # Tests cancelled or left without a specimen whose ORU is not queued yet.
                "withdrawals_waiting": counts["withdrawals_waiting"],
                "last_delivery_at": last.isoformat() if last else None,
                "last_error": stats.last_error if stats is not None else "",
                # The claim number this node's dispatcher holds (`claimed_by` of its messages in
                # flight; `application_name` of its session in pg_stat_activity).
                "claimant": dispatcher.claimant.number if dispatcher is not None else None,
            }

        components = app.state.components
        components.register("hl7_listener", listener.status)
        components.register("hl7_outbox", outbox_status)
        try:
            yield
        finally:
            components.unregister("hl7_listener")
            components.unregister("hl7_outbox")
            scheduler.shutdown(wait=False)
            await listener.stop()
            if dispatcher is not None:
                await dispatcher.close()

    return run
