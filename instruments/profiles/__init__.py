"""Analyser dialects, one module each, citing the vendor's host interface document."""

from __future__ import annotations

from instruments.profiles.base import FieldRef, MeasuredResult, Profile, SpecimenOrder
from instruments.profiles.cobas import CobasProfile
from instruments.profiles.generic import GenericProfile
from instruments.profiles.ortho_vision import OrthoVisionProfile
from instruments.profiles.sysmex_xn import SysmexXnProfile

PROFILES: dict[str, type[Profile]] = {
    profile.name: profile
    for profile in (GenericProfile, SysmexXnProfile, CobasProfile, OrthoVisionProfile)
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]()
    except KeyError:
        raise KeyError(f"unknown analyser profile {name!r}; known: {', '.join(PROFILES)}") from None


__all__ = ["PROFILES", "FieldRef", "MeasuredResult", "Profile", "SpecimenOrder", "get_profile"]
