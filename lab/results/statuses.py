"""The statuses of a result: preliminary -> awaiting_review -> verified -> corrected; cancelled."""

from __future__ import annotations

from enum import StrEnum


class ResultStatus(StrEnum):
    PRELIMINARY = "preliminary"
    AWAITING_REVIEW = "awaiting_review"
    VERIFIED = "verified"
    CORRECTED = "corrected"
    CANCELLED = "cancelled"


R = ResultStatus
# Released to the record: what clinicians may read.
RELEASED = frozenset({R.VERIFIED, R.CORRECTED})
