"""Sysmex XN series haematology analysers.

Follows "Automated Hematology Analyzer XN series ASTM Host Interface Specifications",
Revision 18 (Sysmex document R314185), as far as the public facts summarised in
docs/analysers.md go: the document itself was not at hand in full, so its revision is the
newest one found published, and the points below are those confirmed from public traffic
and summaries:
- the test ID carries the code in the 5th component with the dilution in the 6th:
  `^^^^WBC^1` (LIS2-A2 5.6.1 puts a local code in the 4th; Sysmex uses the 5th);
- H-13 version `E1394-97`.
"""

from __future__ import annotations

from typing import ClassVar

from instruments.astm.records import UniversalTestId
from instruments.profiles.base import Profile


class SysmexXnProfile(Profile):
    name: ClassVar[str] = "sysmex_xn"
    title: ClassVar[str] = "Sysmex XN series (haematology)"
    document: ClassVar[str] = (
        "Sysmex, Automated Hematology Analyzer XN series ASTM Host Interface Specifications, "
        "Revision 18 (R314185); revision not confirmed against the full text"
    )
    version: ClassVar[str] = "E1394-97"

    def test_id(self, code: str) -> UniversalTestId:
        # ^^^^WBC^1: code in component 5, dilution ratio 1 in component 6.
        return UniversalTestId(("", "", "", "", code, "1"))
