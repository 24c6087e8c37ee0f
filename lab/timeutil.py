"""Time is stored timezone-aware in UTC and shown in Europe/Oslo (docs/architecture.md, rule 8)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

OSLO = ZoneInfo("Europe/Oslo")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A naive time is taken as Oslo local time (how analysers and the record send it)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=OSLO)
    return moment.astimezone(UTC)


def oslo_text(moment: datetime | None) -> str:
    """`27.11.2026 08:15` as lab staff read it."""
    if moment is None:
        return ""
    return as_utc(moment).astimezone(OSLO).strftime("%d.%m.%Y %H:%M")
