"""A client of the lab module's JSON API with a bearer token, as another system would call it."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from lab.audit import Actor
from lab.db import make_engine, make_session_factory, transaction
from lab.results.flags import is_critical
from lab.users import tokens


def make_token(database_url: str, username: str, *, label: str = "test kit") -> str:
    """A new API token for `username` (what `lab token create` does)."""
    engine = make_engine(database_url, pool_size=1)
    try:
        with transaction(make_session_factory(engine)) as session:
            return tokens.create_token(
                session, actor=Actor.system("cli"), username=username, label=label
            ).token
    finally:
        engine.dispose()


class ApiClient:
    """The JSON API over HTTP (urllib: no dependency beyond the standard library)."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read().decode("utf-8") or "null")

    def tubes(self, placer: str) -> list[dict[str, Any]]:
        """The specimens of the orders with this placer order number."""
        orders = self.call("GET", f"/api/v1/orders?placer_order_number={placer}")
        return [tube for order in orders for tube in order["specimens"]]

    def receive(self, accession: str) -> None:
        self.call("POST", f"/api/v1/specimens/{accession}/receive")

    def verify_specimen(self, accession: str) -> int:
        """Verify every result of the specimen awaiting review; a critical one with the call
        to the ward documented (the verifying physician phones it)."""
        verified = 0
        for result in self.call("GET", f"/api/v1/results?accession={accession}"):
            if result["status"] != "awaiting_review":
                continue
            body: dict[str, Any] = {}
            if is_critical(result["flags"]):
                body["critical"] = {
                    "notified_person": "Lise Lien, MEDPOL",
                    "notified_at": datetime.now(UTC).isoformat(),
                    "read_back": True,
                }
            self.call("POST", f"/api/v1/results/{result['id']}/verify", body)
            verified += 1
        return verified
