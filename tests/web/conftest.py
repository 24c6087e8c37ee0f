"""Every page test runs with strict translations: a text missing from a catalog fails it.

The browser and page fixtures are in tests/conftest.py, shared with the QC chart's browser test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.web import i18n


@pytest.fixture(autouse=True)
def strict_translations() -> Iterator[None]:
    i18n.mode.strict = True
    yield
    i18n.mode.strict = False
