"""The project's own errors and the one mapping from them to HTTP status and HL7 ACK codes.

Services raise these; routers, views, HL7 handlers and instrument drivers translate them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One thing wrong with one input field, in words a person can act on."""

    field: str
    message: str


class LabError(Exception):
    """Base of every error the lab module raises on purpose."""

    http_status: ClassVar[int] = 400
    # HL7 v2.5 table 0357 (message error condition codes) and the ACK code to answer with.
    hl7_error_code: ClassVar[str] = "207"
    hl7_ack_code: ClassVar[str] = "AE"

    def __init__(self, message: str, *, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []


class InvalidInput(LabError):
    """The request or message carries a value that cannot be accepted."""

    http_status = 422
    hl7_error_code = "102"

    @classmethod
    def field(cls, field: str, message: str) -> InvalidInput:
        return cls(message, problems=[FieldProblem(field, message)])


class NotFound(LabError):
    """The thing named does not exist (unknown accession number, test code, ...)."""

    http_status = 404
    hl7_error_code = "204"


class Conflict(LabError):
    """The action does not fit the current state (second verify, result on rejected specimen)."""

    http_status = 409
    hl7_error_code = "207"


class AuthenticationRequired(LabError):
    http_status = 401
    hl7_ack_code = "AR"


class PermissionDenied(LabError):
    http_status = 403
    hl7_ack_code = "AR"
