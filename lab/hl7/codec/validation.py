"""hl7apy STRICT validation of whole messages against the v2.5.1 structures.

hl7apy is the structure authority (docs/architecture.md, dependencies), not a hot-path parser:
about 30 ms a message. Used by the tests on everything we emit and optionally at run time. It
checks segment order and grouping, required fields and data types; it does not check table
values (an OBX-8 `Q` passes), so tests check those separately. Known fault: a v2.5.1 OML^O21
with several ORC+OBR groups fails because hl7apy files the second ORC under PRIOR_RESULT
(hl7apy issue #148), so inbound orders are checked by `lab.hl7.codec.inbound`, not here. A
second: it checks a choice group as a sequence (see `_only_choice_faults`).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path
from typing import Any

from lab.hl7.codec.er7 import Message
from lab.hl7.codec.errors import Hl7Error


class StrictValidationError(Hl7Error):
    """hl7apy found the message invalid; the text is hl7apy's."""


def validate_strict(message: Message | str) -> None:
    """Raise StrictValidationError unless hl7apy STRICT accepts the message."""
    # Imported here: hl7apy loads its structure tables on import (about half a second), which
    # only the callers who validate should pay.
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.exceptions import HL7apyException
    from hl7apy.parser import parse_message

    er7 = message.to_er7() if isinstance(message, Message) else message
    try:
        parsed = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    except HL7apyException as exc:
        raise StrictValidationError(f"hl7apy: {exc}") from exc
    try:
        valid = parsed.validate()
    except HL7apyException as exc:
        if not _only_choice_faults(parsed):
            raise StrictValidationError(f"hl7apy: {exc}") from exc
        valid = True
    if not valid:
        raise StrictValidationError("hl7apy: validate() returned False")


# hl7apy 1.3.5 validates a `choice` group as if it were a `sequence` (hl7apy/validation.py,
# `_check_known_element` takes `ref[0] in ('sequence', 'choice')` alike and checks each
# alternative's own cardinality (1, 1)), so a choice such as ORR_O02's order detail
# (OBR | RQD | RQ1 | RXO | ODS | ODT, HL7 v2.5.1 chapter 4, ORR^O02) fails unless it holds all
# six segments. Its parser files the segments into the right groups. A message whose only
# errors are such "missing" alternatives, in choice groups that each hold exactly one of them,
# is valid v2.5.1; every other error still fails.
_MISSING = re.compile(r"^Missing required child (?P<group>\w+)\.(?P<child>\w+)$")


def _only_choice_faults(parsed: Any) -> bool:
    from hl7apy import load_reference
    from hl7apy.exceptions import HL7apyException
    from hl7apy.validation import Validator

    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.txt"
        with contextlib.suppress(HL7apyException):  # it raises the first error it wrote
            Validator.validate(parsed, report_file=str(report))
        lines = report.read_text(encoding="utf-8").splitlines() if report.exists() else []
    errors = [line.removeprefix("Error: ") for line in lines if line.startswith("Error: ")]
    if not errors:
        return False
    choices: set[str] = set()
    for error in errors:
        found = _MISSING.match(error)
        if found is None:
            return False
        try:
            kind = load_reference(found["group"], "Group", parsed.version)[0]
        except (HL7apyException, KeyError):
            return False
        if kind != "choice":
            return False
        choices.add(found["group"])
    return all(len(group.children) == 1 for group in _groups(parsed) if group.name in choices)


def _groups(element: Any) -> list[Any]:
    found = []
    for child in element.children:
        if child.classname == "Group":
            found.append(child)
            found.extend(_groups(child))
    return found
