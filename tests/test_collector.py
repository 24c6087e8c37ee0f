"""Python's garbage collector in a started app: what lives long frozen, and young collections
rare enough that one message's objects die before a collection moves them to the old
generations (lab.main._freeze_what_lives_long)."""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient

from lab.main import GC_THRESHOLDS


def test_a_started_app_freezes_what_lives_long_and_collects_young_objects_less_often(
    client: TestClient,
) -> None:
    assert client.get("/healthz").status_code == 200
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > 700  # Python's default, which made full collections every few s
