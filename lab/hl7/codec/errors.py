"""Errors of the HL7 protocol core, and the structured problem that goes into an ERR segment.

Two families, as in h11: `RemoteProtocolError` when the peer sent something we cannot accept
(bad framing, bad ER7 structure, an unknown character set) and `LocalProtocolError` when we were
asked to emit something HL7 cannot carry (a character outside the message's character set, a
payload that cannot be framed). Any other exception out of `lab.hl7` is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum


class ErrorCode(IntEnum):
    """HL7 table 0357 "Message error condition codes" as listed for v2.5.1 (ERR-3)."""

    SEGMENT_SEQUENCE_ERROR = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE_ERROR = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT_CODE = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION_ID = 203
    UNKNOWN_KEY_IDENTIFIER = 204
    DUPLICATE_KEY_IDENTIFIER = 205
    APPLICATION_RECORD_LOCKED = 206
    APPLICATION_INTERNAL_ERROR = 207

    @property
    def text(self) -> str:
        """The table's own description, sent as ERR-3.2."""
        return _ERROR_TEXT[self]


_ERROR_TEXT = {
    ErrorCode.SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    ErrorCode.REQUIRED_FIELD_MISSING: "Required field missing",
    ErrorCode.DATA_TYPE_ERROR: "Data type error",
    ErrorCode.TABLE_VALUE_NOT_FOUND: "Table value not found",
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ErrorCode.UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    ErrorCode.UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    ErrorCode.UNSUPPORTED_VERSION_ID: "Unsupported version id",
    ErrorCode.UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    ErrorCode.DUPLICATE_KEY_IDENTIFIER: "Duplicate key identifier",
    ErrorCode.APPLICATION_RECORD_LOCKED: "Application record locked",
    ErrorCode.APPLICATION_INTERNAL_ERROR: "Application internal error",
}


class Severity(Enum):
    """HL7 table 0516 (ERR-4)."""

    ERROR = "E"
    WARNING = "W"
    INFORMATION = "I"


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One thing wrong with an inbound message, in the shape of a v2.5.1 ERR segment.

    `segment_sequence` is the occurrence of that segment ID in the message, 1 for the first
    (ERL.2, v2.5.1 section 2.A.26); `field_position` and `component` are 1-based HL7 positions,
    None when the problem is about a whole segment or field.
    """

    segment_id: str
    segment_sequence: int = 1
    field_position: int | None = None
    component: int | None = None
    repetition: int | None = None
    """1-based field repetition (ERL.4), e.g. which PID-3 identifier; None: the first."""
    code: ErrorCode
    severity: Severity = Severity.ERROR
    message: str

    def location(self) -> str:
        """`PID-8`, `OBR[2]-4.1`: for log lines and error texts."""
        where = self.segment_id
        if self.segment_sequence != 1:
            where += f"[{self.segment_sequence}]"
        if self.field_position is not None:
            where += f"-{self.field_position}"
            if self.repetition is not None and self.repetition != 1:
                where += f"({self.repetition})"
            if self.component is not None:
                where += f".{self.component}"
        return where

    def __str__(self) -> str:
        return f"{self.location()} {int(self.code)} {self.code.text}: {self.message}"


class Hl7Error(Exception):
    """Base of every error raised on purpose by `lab.hl7`."""


class RemoteProtocolError(Hl7Error):
    """The peer sent bytes we cannot accept."""


class MessageStructureError(RemoteProtocolError):
    """An ER7 message the codec cannot read; `problem` is what the ERR segment should say."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class MllpFramingError(RemoteProtocolError):
    """The MLLP byte stream broke a rule that makes the connection unusable (e.g. oversize)."""


class LocalProtocolError(Hl7Error):
    """We were asked to build or frame something that HL7 cannot carry."""
