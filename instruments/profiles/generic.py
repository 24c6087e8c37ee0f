"""Generic LIS2-A2 profile: the standard as written, and the demo analyser (docs/analysers.md).

Follows CLSI LIS2-A2 (2004) and LIS1-A (2003), the successors of ASTM E1394-97 and E1381-02;
field numbers are cited where they are used in `base.py`.
"""

from __future__ import annotations

from instruments.profiles.base import Profile


class GenericProfile(Profile):
    """`^^^code` test IDs, ISO 8859-1, P > O > R > C records."""
