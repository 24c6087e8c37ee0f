"""Log lines about failed messages that carry no patient data.

An exception's text may hold whatever the message held: a database error repeats the key
that clashed (`Key (value)=(15038524094) already exists`), a parser names the text it could
not read. The HL7 side therefore logs a failure as its exception class, the SQLSTATE of a
database error and where in our code it happened (file, line, function), never its message:
enough to find the bug, nothing about the patient. What the message was is in the message log
(control ID, segment and field of each problem), behind the roles that may read it.
"""

from __future__ import annotations

import traceback
from pathlib import Path


def describe_failure(exc: BaseException, *, frames: int = 4) -> str:
    """`DataError [22001] at inbox.py:312 in _apply <- handlers.py:96 in handle` (no values)."""
    name = type(exc).__name__
    state = getattr(getattr(exc, "orig", None), "sqlstate", None) or getattr(exc, "sqlstate", None)
    if state:
        name += f" [{state}]"
    stack = traceback.extract_tb(exc.__traceback__)
    ours = [frame for frame in stack if "/site-packages/" not in frame.filename] or stack
    where = " <- ".join(
        f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
        for frame in reversed(ours[-frames:])
    )
    return f"{name} at {where}" if where else name
