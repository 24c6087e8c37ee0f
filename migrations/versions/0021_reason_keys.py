"""reasons as keys with parameters: holds and the unmatched queue

Holds (`result.holds`, `result_version.holds`) get `key` and `params` beside their English
`text`; the unmatched queue gets `reason_code` and `reason_params` beside `reason`. The pages
translate the key; they no longer read the English sentence. The rows written before this
revision are read once here, with the sentences as the services wrote them up to now.

Revision ID: 0021_reason_keys
Revises: 0020_qc_moving_alarm
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0021_reason_keys"
down_revision: str | tuple[str, ...] | None = "0020_qc_moving_alarm"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Params = dict[str, str]


def _groups(found: re.Match[str]) -> Params:
    return {name: value or "" for name, value in found.groupdict().items()}


def _qc(found: re.Match[str]) -> Params:
    analyser = found["analyser"]
    return {
        "test": found["test"],
        "analyser": "" if analyser == "its analyser" else analyser,
        "rule": found["rule"] or "",
    }


def _implausible(found: re.Match[str]) -> Params:
    limits = found["limits"]
    low = high = ""
    pair = re.fullmatch(r"(?P<low>[\d.]+)-(?P<high>[\d.]+)", limits)
    if pair is not None:
        low, high = pair["low"], pair["high"]
    elif limits.startswith(">= "):
        low = limits[3:]
    elif limits.startswith("<= "):
        high = limits[3:]
    return {"value": found["value"], "unit": found["unit"] or "", "low": low, "high": high}


def _delta(found: re.Match[str]) -> Params:
    params = {"previous": found["previous"], "value": found["value"], "limit": found["limit"]}
    window = re.fullmatch(r"(?P<limit>.+?) within (?P<n>[\d.]+) (?P<unit>h|days)", found["limit"])
    if window is not None:
        params["limit"] = window["limit"].replace("log-normal ", "")
        params["window"] = window["n"]
        params["window_unit"] = window["unit"]
    return params


_INDEX = re.compile(r"(?P<name>haemolysis|icterus|lipaemia) \([HIL]\) index ([\d.]+) > ([\d.]+)")


def _interference(found: re.Match[str]) -> Params:
    params = {"test": found["test"]}
    for index in _INDEX.finditer(found["indices"]):
        key = index["name"][0]
        params[key] = index.group(2)
        params[f"{key}_limit"] = index.group(3)
    return params


# The sentences the rules wrote (lab/rules/judge.py, lab/results) and the key each one is now.
_HOLDS: tuple[tuple[re.Pattern[str], str, Callable[[re.Match[str]], Params]], ...] = (
    (re.compile(r"^the specimen is rejected$"), "specimen_rejected", _groups),
    (
        re.compile(r"^(?P<test>\S+) is locked by QC on (?P<analyser>.+?)(?: \((?P<rule>.+)\))?$"),
        "qc_locked",
        _qc,
    ),
    (
        re.compile(
            r"^(?P<test>\S+) is not released without a person in rule set v(?P<version>\d+)$"
        ),
        "not_enabled",
        _groups,
    ),
    (
        re.compile(r"^the analyser flagged it critical \((?P<flag>.+)\)$"),
        "analyser_critical",
        _groups,
    ),
    (re.compile(r"^analyser flag (?P<flags>.+)$"), "analyser_flag", _groups),
    (re.compile(r"^a text result is not released unseen$"), "text_result", _groups),
    (
        re.compile(r"^reported as (?P<value>\S+): outside the measuring range$"),
        "measuring_range",
        _groups,
    ),
    (
        re.compile(
            r"^(?P<value>\S+) (?P<unit>\S*) ?is not a value a living patient can have "
            r"\(plausible (?P<limits>.+)\); measure again$"
        ),
        "implausible",
        _implausible,
    ),
    (
        re.compile(r"^changed from (?P<previous>\S+) to (?P<value>\S+) \(limit (?P<limit>.+)\)$"),
        "delta",
        _delta,
    ),
    (
        re.compile(r"^no reference interval: the patient's age at collection is unknown$"),
        "no_interval_age",
        _groups,
    ),
    (
        re.compile(r"^no reference interval for sex (?P<sex>\S+) at (?P<days>\d+) days of age$"),
        "no_interval_for",
        _groups,
    ),
    (re.compile(r"^no reference interval applies to this patient$"), "no_interval", _groups),
    (
        re.compile(r"^outside the autoverification range (?P<low>\S*)-(?P<high>\S*)$"),
        "autoverify_range",
        _groups,
    ),
    (re.compile(r"^below the critical limit (?P<limit>\S+)$"), "critical_below", _groups),
    (re.compile(r"^above the critical limit (?P<limit>\S+)$"), "critical_above", _groups),
    (re.compile(r"^beyond the critical limit$"), "critical", _groups),
    (re.compile(r"^(?P<test>\S+): (?P<indices>.*index.*)$"), "interference", _interference),
    (re.compile(r"^released together with (?P<tests>.+)$"), "waits_for", _groups),
    (re.compile(r"^recalculated: (?P<test>\S+) corrected"), "recalculated", _groups),
    (
        re.compile(r"^measured (?P<n>\d+) times with different values: choose the one to report$"),
        "choose",
        _groups,
    ),
)


def hold_key(text: str) -> tuple[str, Params]:
    """The key and parameters of a hold's sentence; ("", {}) for one no rule wrote."""
    for pattern, key, params in _HOLDS:
        found = pattern.match(text or "")
        if found is not None:
            return key, params(found)
    return "", {}


_VALUE_CHECK = (
    ("is not a finite number", "not_finite"),
    ("is not a number", "not_a_number"),
    ("out of any sane range", "out_of_range"),
    ("significant digits", "too_many_digits"),
    ("smaller than any analyser", "too_small"),
    ("is negative", "negative"),
    ("the value is empty", "empty"),
)
_UNMATCHED: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"^test code '(?P<code>.+)' is not mapped for analyser (?P<analyser>\S+)$"),
        "not_mapped",
    ),
    (
        re.compile(r"^the result has no specimen ID \(looked in (?P<fields>.+) of the O record"),
        "no_specimen",
    ),
    (re.compile(r"^result status '(?P<status>.*)' \(R-9\) is not a result to record$"), "status"),
    (re.compile(r"^(?P<code>\S+) is not ordered on (?P<number>\S+)$"), "test_not_ordered"),
    (re.compile(r"^unknown test code '(?P<code>.+)'$"), "test_unknown"),
    (re.compile(r"^(?P<code>\S+) on (?P<number>\S+) (?:was|is) cancelled$"), "test_cancelled"),
    (
        re.compile(
            r"^(?P<code>\S+) is reported in (?P<unit>\S+), not (?P<given>.+); "
            r"no conversion is made$"
        ),
        "unit_mismatch",
    ),
    (
        re.compile(r"^(?P<number>\S+) is (?P<status>\S+); no results can be added$"),
        "specimen_closed",
    ),
    (re.compile(r"^no specimen with accession number (?P<number>\S+)$"), "specimen_unknown"),
    (
        re.compile(r"^(?P<number>\S+) is not a valid accession number \(check digit\)$"),
        "accession_check_digit",
    ),
    (re.compile(r"^the message could not be read: (?P<error>.*)$"), "unreadable"),
    (re.compile(r"^R-13 cannot be read: (?P<error>.*)$"), "clock"),
    (
        re.compile(r"^the result could not be stored \((?P<detail>.*)\); the rest of the message"),
        "not_stored",
    ),
)
_NOT_A_NUMBER = re.compile(r"^(?P<code>\S+) takes a number: (?P<why>.+)$")


def unmatched_code(reason: str) -> tuple[str, Params]:
    """The code and parameters of an unmatched reason; ("", {}) for one not known here."""
    found = _NOT_A_NUMBER.match(reason or "")
    if found is not None:
        why = found["why"]
        check = next((code for marker, code in _VALUE_CHECK if marker in why), "")
        value = why.split(" is ", 1)[0].split(" has ", 1)[0] if check != "empty" else ""
        return "value_not_number", {"code": found["code"], "value": value, "why": check}
    for pattern, code in _UNMATCHED:
        found = pattern.match(reason or "")
        if found is not None:
            return code, _groups(found)
    return "", {}


def _keyed(holds: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The holds with their keys, or None when each has one already."""
    if all("key" in hold for hold in holds):
        return None
    keyed = []
    for hold in holds:
        if "key" not in hold:
            key, params = hold_key(str(hold.get("text", "")))
            hold = {**hold, "key": key, "params": params}
        keyed.append(hold)
    return keyed


def _convert_holds(connection: sa.Connection, name: str) -> None:
    table = sa.table(name, sa.column("id"), sa.column("holds", postgresql.JSONB()))
    rows = connection.execute(
        sa.select(table.c.id, table.c.holds).where(table.c.holds != sa.text("'[]'::jsonb"))
    ).all()
    for row_id, holds in rows:
        keyed = _keyed(list(holds or []))
        if keyed is not None:
            connection.execute(sa.update(table).where(table.c.id == row_id).values(holds=keyed))


def upgrade() -> None:
    op.add_column(
        "unmatched_result",
        sa.Column("reason_code", sa.String(length=40), nullable=False, server_default=""),
    )
    op.add_column(
        "unmatched_result",
        sa.Column(
            "reason_params",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
    )
    connection = op.get_bind()
    for row_id, reason in connection.execute(
        sa.text("SELECT id, reason FROM unmatched_result")
    ).all():
        code, params = unmatched_code(reason)
        if code:
            connection.execute(
                sa.text(
                    "UPDATE unmatched_result SET reason_code = :code, "
                    "reason_params = CAST(:params AS jsonb) WHERE id = :id"
                ),
                {"code": code, "params": json.dumps(params), "id": row_id},
            )
    _convert_holds(connection, "result")
    # The versions are append-only; adding the key beside the sentence they keep is the one
    # change they get here (as in 0009_measurements).
    op.execute("ALTER TABLE result_version DISABLE TRIGGER result_version_append_only")
    _convert_holds(connection, "result_version")
    op.execute("ALTER TABLE result_version ENABLE TRIGGER result_version_append_only")


def downgrade() -> None:
    # The keys beside the holds' sentences are left: older code reads `code` and `text` only.
    op.drop_column("unmatched_result", "reason_params")
    op.drop_column("unmatched_result", "reason_code")
