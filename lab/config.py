"""Settings of the lab module, read from `LAB_*` environment variables (docs/operations.md)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lab.errors import InvalidInput

NODE_ROLES = frozenset({"web", "hl7", "instruments"})


class Settings(BaseSettings):
    """Every setting an operator can give; defaults are those of docs/operations.md."""

    model_config = SettingsConfigDict(env_prefix="LAB_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the PostgreSQL server; unset: embedded PostgreSQL.",
    )
    database_runtime_url: str | None = Field(
        default=None,
        description="URL of the runtime role (lab_runtime); unset: the owner URL as lab_runtime.",
    )
    data_dir: Path = Field(default=Path("./var"), description="Embedded database, raw archive.")
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    http_max_body_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Larger request bodies get 413."
    )
    mllp_host: str = "127.0.0.1"
    mllp_port: int = 2575
    ehr_mllp_url: str | None = None
    mllp_tls_cert: Path | None = Field(default=None, description="PEM certificate: MLLP over TLS.")
    mllp_tls_key: Path | None = Field(default=None, description="PEM private key of that cert.")
    mllp_allowed_peers: str = Field(
        default="",
        description="Addresses/CIDRs that may connect to the HL7 listener; empty: loopback only.",
    )
    mllp_tls_ca: Path | None = Field(
        default=None,
        description="PEM CA file: with TLS, clients must present a certificate it signed.",
    )
    mllp_tls_senders: dict[str, list[str]] = Field(
        default_factory=dict,
        description="JSON: certificate CN or subject -> the MSH-3^MSH-4 senders it may use.",
    )
    mllp_max_connections: int = Field(default=128, ge=1)
    mllp_max_connections_per_peer: int = Field(default=32, ge=1)
    mllp_max_message_bytes: int = Field(default=1024 * 1024, ge=1024)
    mllp_idle_timeout_seconds: float = Field(default=600.0, gt=0)
    mllp_message_timeout_seconds: float = Field(default=60.0, gt=0)
    release_hold_minutes: int = Field(
        default=60, description="Hold an order's results until complete or this old; 0: at once."
    )
    instruments_file: Path | None = None
    astm_archive_daily_mb: int = Field(
        default=256, ge=1, description="Raw ASTM archive: at most this many MB per analyser a day."
    )
    demo: bool = False
    demo_password: str | None = None
    demo_astm_port: int = 5001
    lab_name: str = "Laboratoriemodulen"
    lab_address: str = Field(
        default="", description="The lab's postal address on printed reports; lines split by ';'."
    )
    lab_phone: str = Field(default="", description="The lab's telephone number on reports.")
    session_timeout_minutes: int = 30
    session_max_hours: float = Field(
        default=12.0,
        gt=0,
        description="A web session ends this long after sign-in however busy it is "
        "(the wall screen's `display` sessions excepted).",
    )
    max_failed_logins: int = 5
    lockout_minutes: int = 15
    token_days: int = Field(
        default=90,
        ge=1,
        le=3650,
        description="An API token expires this many days after it is made.",
    )
    password_change_ends_tokens: bool = Field(
        default=True, description="A new password also revokes the user's API tokens."
    )
    login_rate_per_address: int = Field(
        default=30, ge=1, description="Sign-in attempts per minute from one address."
    )
    login_rate_per_account: int = Field(
        default=10, ge=1, description="Sign-in attempts per minute for one user name."
    )
    login_hash_workers: int = Field(
        default=2, ge=1, le=32, description="Passwords checked at the same time (argon2)."
    )
    login_hash_queue: int = Field(
        default=8, ge=0, description="Sign-ins that may wait for a password check; more get 503."
    )
    timezone: str = "Europe/Oslo"
    roles: str = Field(
        default="web,hl7,instruments",
        description="What this node runs: a comma-separated subset of web, hl7, instruments.",
    )

    workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Intake processes (HL7 listener, analyser lines); 0: one per CPU core.",
    )

    def worker_count(self) -> int:
        """How many intake processes this node runs (lab/intake.py)."""
        return self.workers or max(1, len(os.sched_getaffinity(0)))

    def role_set(self) -> frozenset[str]:
        """The roles of this node; an unknown name is refused (a typo must not start nothing)."""
        chosen = frozenset(part.strip() for part in self.roles.split(",") if part.strip())
        unknown = chosen - NODE_ROLES
        if unknown or not chosen:
            raise InvalidInput.field(
                "LAB_ROLES",
                f"a comma-separated subset of {', '.join(sorted(NODE_ROLES))}, not {self.roles!r}",
            )
        return chosen


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
