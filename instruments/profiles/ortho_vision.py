"""Ortho Clinical Diagnostics ORTHO VISION / VISION Max (blood bank, BioVue cassettes).

Follows the "ORTHO VISION (BioVue) System LIS interface" guide of Ortho Clinical Diagnostics
(copyright 2014-2021); its exact document number and revision could not be confirmed from
public sources, so treat the points below as taken from public descriptions
(docs/analysers.md) and real traffic:
- plain test codes without the `^^^` prefix (`ABO`, `RH`), one component;
- text in Windows-1252 (patient names with æ ø å and 0x80-0x9F punctuation).
"""

from __future__ import annotations

from typing import ClassVar

from instruments.astm.records import UniversalTestId
from instruments.profiles.base import Profile


class OrthoVisionProfile(Profile):
    name: ClassVar[str] = "ortho_vision"
    title: ClassVar[str] = "Ortho Clinical Diagnostics ORTHO VISION"
    document: ClassVar[str] = (
        "Ortho Clinical Diagnostics, ORTHO VISION (BioVue) System LIS interface guide "
        "(2014-2021); document number and revision not confirmed"
    )
    default_encoding: ClassVar[str] = "cp1252"

    def test_id(self, code: str) -> UniversalTestId:
        return UniversalTestId((code,))
