"""The project's own errors and the one mapping from them to HTTP status and HL7 ACK codes.

Services raise these; routers, views, HL7 handlers and instrument drivers translate them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One thing wrong with one input field, in words a person can act on.

    `message` is the English text of the API and the logs; `code` (with `params`) names the
    problem for the pages, which show it in the reader's language (`error.<code>` in the
    message catalogs of lab/web/locale).
    """

    field: str
    message: str
    code: str | None = None
    params: Mapping[str, object] = dataclass_field(default_factory=dict)


class LabError(Exception):
    """Base of every error the lab module raises on purpose."""

    http_status: ClassVar[int] = 400
    # HL7 v2.5 table 0357 (message error condition codes) and the ACK code to answer with.
    hl7_error_code: ClassVar[str] = "207"
    hl7_ack_code: ClassVar[str] = "AE"

    def __init__(
        self,
        message: str,
        *,
        problems: list[FieldProblem] | None = None,
        code: str | None = None,
        params: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []
        # A stable name of what went wrong and the values it concerns: the pages translate it
        # (`error.<code>`); the JSON API sends it beside the English message.
        self.code = code
        self.params: Mapping[str, object] = params or {}


class InvalidInput(LabError):
    """The request or message carries a value that cannot be accepted."""

    http_status = 422
    hl7_error_code = "102"

    @classmethod
    def field(
        cls,
        field: str,
        message: str,
        *,
        code: str | None = None,
        params: Mapping[str, object] | None = None,
    ) -> InvalidInput:
        problem = FieldProblem(field, message, code, params or {})
        return cls(message, problems=[problem], code=code, params=params)


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
