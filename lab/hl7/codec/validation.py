"""hl7apy STRICT validation of whole messages against the v2.5.1 structures.

hl7apy is the structure authority (docs/architecture.md, dependencies), not a hot-path parser:
about 30 ms a message. Used by the tests on everything we emit and optionally at run time. It
checks segment order and grouping, required fields and data types; it does not check table
values (an OBX-8 `Q` passes), so tests check those separately. Known fault: a v2.5.1 OML^O21
with several ORC+OBR groups fails because hl7apy files the second ORC under PRIOR_RESULT
(hl7apy issue #148), so inbound orders are checked by `lab.hl7.codec.inbound`, not here.
"""

from __future__ import annotations

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
        valid = parsed.validate()
    except HL7apyException as exc:
        raise StrictValidationError(f"hl7apy: {exc}") from exc
    if not valid:
        raise StrictValidationError("hl7apy: validate() returned False")
