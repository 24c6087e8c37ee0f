"""HL7 DTM/TS values (v2.5.1 section 2.A.22 and 2.A.77) to and from aware datetimes."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Final

from lab.hl7.codec.errors import LocalProtocolError

# YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]
_DTM: Final = re.compile(
    r"\A(\d{4})(\d{2})(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?)?)?([+-]\d{4})?\Z"
)


@lru_cache(maxsize=256)
def parse_timestamp(text: str, local_zone: tzinfo) -> datetime:
    """An aware datetime from a DTM with at least day precision.

    Without an offset the time is read in `local_zone` (the partner's zone, Europe/Oslo for the
    regional record). Raises ValueError with a readable reason.

    Kept for the last few hundred texts (a datetime never changes): an order repeats its
    message's time in every OBR-7 and SPM-17.
    """
    match = _DTM.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not an HL7 date/time (YYYYMMDD[HHMM[SS]][+ZZZZ])")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0").ljust(6, "0"))
    zone: tzinfo = local_zone
    if offset is not None:
        sign = -1 if offset[0] == "-" else 1
        hours, minutes = int(offset[1:3]), int(offset[3:5])
        if hours > 14 or minutes > 59:
            raise ValueError(f"{text!r} has an impossible UTC offset")
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    moment = datetime(
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        micro,
        tzinfo=zone,
    )
    try:
        moment.astimezone(UTC)  # the lab stores times in UTC: year 1 +14:00 has none
    except OverflowError:
        raise ValueError(f"{text!r} lies outside the dates that can be stored") from None
    return moment


def parse_date(text: str) -> date:
    """The date part of a DT/DTM (PID-7 birth date). Raises ValueError."""
    if len(text) < 8 or not text[:8].isdigit():
        raise ValueError(f"{text!r} is not an HL7 date (YYYYMMDD)")
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def format_timestamp(moment: datetime) -> str:
    """`YYYYMMDDHHMMSS+ZZZZ` in the datetime's own zone; naive datetimes are refused."""
    offset = moment.utcoffset()
    if offset is None:
        raise LocalProtocolError("HL7 timestamps are sent with their UTC offset; got a naive one")
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return moment.strftime("%Y%m%d%H%M%S") + f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def format_date(day: date) -> str:
    return day.strftime("%Y%m%d")
