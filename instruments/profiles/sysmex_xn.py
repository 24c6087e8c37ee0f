"""Sysmex XN series haematology analysers.

Follows "Automated Hematology Analyzer XN series ASTM Host Interface Specifications",
Revision 18 (Sysmex document R314185), as far as the public facts summarised in
docs/analysers.md go: the document itself was not at hand in full, so its revision is the
newest one found published, and the points below are those confirmed from public traffic
and summaries:
- the test ID carries the code in the 5th component with the dilution in the 6th:
  `^^^^WBC^1` (LIS2-A2 5.6.1 puts a local code in the 4th; Sysmex uses the 5th);
- H-13 version `E1394-97`;
- the sample number can come in O-4 (`rack^tube^sample number^attribute`, the number padded
  with spaces) with O-3 empty, and a query's Q-3 has the same layout (the number third); both
  are read (O-4 when O-3 is empty).
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
    # A query's Q-3 is rack^tube^sample number^attribute: is the tube's position, so the
    # sample number (Q-3.3) is read first; `^SPECIMEN` (LIS2-A2's layout) still works after it.
    specimen_fields: ClassVar[tuple[str, ...]] = ("O-3", "O-4.3", "Q-3.3", "Q-3.2")

    def dilution(self, test: UniversalTestId) -> str:
        # ^^^^WBC^1: the 6th component is the dilution ratio; 1 means undiluted.
        ratio = test.dilution.strip()
        return "" if ratio in ("", "1") else ratio

    def test_id(self, code: str) -> UniversalTestId:
        # ^^^^WBC^1: code in component 5, dilution ratio 1 in component 6.
        return UniversalTestId(("", "", "", "", code, "1"))
