"""The status strip under the top bar: each analyser and HL7 link in the page's words.

A line counts as up only when nothing waits on a person: an analyser whose results sit in the
unmatched queue, or an outbox with dead letters, is shown as needing attention, not as `up`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INSTRUMENT_PREFIX = "instrument:"


@dataclass(frozen=True, slots=True)
class StripLine:
    label_key: str  # `component.<kind>`, with `name` as its parameter
    name: str
    state: str  # up | down | attention | waiting | unknown
    notes: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    link: str | None = None


def strip_lines(
    report: dict[str, dict[str, Any]], *, open_unmatched: dict[str, int]
) -> list[StripLine]:
    lines = []
    for name, status in report.items():
        state = str(status.get("state", "unknown"))
        if state not in ("up", "down", "waiting"):
            state = "down" if state == "error" else "unknown"
        notes: list[tuple[str, dict[str, object]]] = []
        link = None
        if name.startswith(INSTRUMENT_PREFIX):
            instrument = name.removeprefix(INSTRUMENT_PREFIX)
            label, shown = "component.instrument", instrument
            link = "/analysers"
            waiting = open_unmatched.get(instrument, 0)
            if waiting:
                notes.append(("component.unmatched", {"count": waiting}))
                if state == "up":
                    state = "attention"
        elif name == "hl7_outbox":
            label, shown = "component.hl7_outbox", ""
            link = "/messages"
            dead = int(status.get("dead") or 0)
            queued = int(status.get("queued") or 0)
            if dead:
                notes.append(("component.dead", {"count": dead}))
                if state == "up":
                    state = "attention"
            if queued:
                notes.append(("component.queued", {"count": queued}))
        elif name in ("hl7_listener", "turnaround_indexer"):
            label, shown = f"component.{name}", ""
        else:
            label, shown = "component.other", name
        lines.append(StripLine(label, shown, state, notes, link))
    return lines
