"""What each analyser line is doing, for `GET /api/v1/instruments`, `/healthz`; no patient data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

#: An alarm shows on /healthz for this many hours after it was raised.
ALARM_HOURS = 24


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True, kw_only=True)
class InstrumentStatus:
    name: str
    profile: str
    transport: str
    state: str = "stopped"  # stopped|listening|connecting|connected|waiting|error
    connections: int = 0
    peer: str = ""
    connected_since: datetime | None = None
    last_message_at: datetime | None = None
    last_error: str = ""
    last_error_at: datetime | None = None
    errors: int = 0
    frames_received: int = 0
    frames_rejected: int = 0
    messages_received: int = 0
    messages_sent: int = 0
    messages_not_delivered: int = 0
    results_recorded: int = 0
    results_repeated: int = 0
    queries_answered: int = 0
    unmatched: int = 0
    qc_results: int = 0
    orders_downloaded: int = 0
    refused: int = 0
    alarm: str = ""  # short, without addresses: shown on /healthz to anyone
    alarm_detail: str = ""  # with addresses: for signed-in staff
    alarm_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def link_up(self, peer: str) -> None:
        self.connections += 1
        self.state = "connected"
        self.peer = peer
        self.connected_since = _now()

    def link_down(self, idle_state: str) -> None:
        self.connections = max(0, self.connections - 1)
        if self.connections == 0:
            self.state = idle_state
            self.peer = ""
            self.connected_since = None

    def error(self, text: str) -> None:
        self.errors += 1
        self.last_error = text[:300]
        self.last_error_at = _now()

    def raise_alarm(self, alarm: str, detail: str, *, refused: bool = False) -> None:
        """Something an operator must look at (a refused connection, a full archive)."""
        if refused:
            self.refused += 1
        self.alarm = alarm
        self.alarm_detail = detail[:300]
        self.alarm_at = _now()
        self.error(detail)

    def current_alarm(self) -> str:
        """The alarm while it is less than `ALARM_HOURS` old."""
        if self.alarm_at is None or _now() - self.alarm_at > timedelta(hours=ALARM_HOURS):
            return ""
        return self.alarm

    def message_received(self) -> None:
        self.messages_received += 1
        self.last_message_at = _now()

    def as_dict(self) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "name": self.name,
            "profile": self.profile,
            "transport": self.transport,
            "state": self.state,
            "connected": self.connections > 0,
            "connections": self.connections,
            "peer": self.peer,
            "connected_since": iso(self.connected_since),
            "last_message_at": iso(self.last_message_at),
            "last_error": self.last_error,
            "last_error_at": iso(self.last_error_at),
            "errors": self.errors,
            "frames_received": self.frames_received,
            "frames_rejected": self.frames_rejected,
            "messages_received": self.messages_received,
            "messages_sent": self.messages_sent,
            "messages_not_delivered": self.messages_not_delivered,
            "results_recorded": self.results_recorded,
            "results_repeated": self.results_repeated,
            "queries_answered": self.queries_answered,
            "unmatched": self.unmatched,
            "qc_results": self.qc_results,
            "orders_downloaded": self.orders_downloaded,
            "refused": self.refused,
            "alarm": self.current_alarm(),
            "alarm_detail": self.alarm_detail if self.current_alarm() else "",
            "alarm_at": iso(self.alarm_at),
        }

    def health(self) -> dict[str, Any]:
        """For /healthz: a line that is down is 'degraded', not an error of the whole module."""
        state = (
            "up" if self.state in ("connected", "listening", "connecting", "waiting") else "down"
        )
        return {
            "state": state,
            "line": self.state,
            "errors": self.errors,
            "unmatched": self.unmatched,
            "alarm": self.current_alarm(),
        }
