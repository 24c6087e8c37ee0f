"""Users and tokens in and out of the JSON API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class UserIn(BaseModel):
    username: str = Field(min_length=2, max_length=64)
    display_name: str = Field(default="", max_length=200)
    title: str = Field(
        default="",
        max_length=100,
        description='Printed after the name ("Godkjent av"), e.g. overlege',
    )
    roles: list[str] = Field(min_length=1)
    password: str | None = Field(default=None, description="Omit for machine accounts")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    username: str
    display_name: str
    title: str = ""
    roles: list[str]
    active: bool


class TokenIn(BaseModel):
    label: str = Field(default="", max_length=100)
    days: int | None = Field(
        default=None, ge=1, le=3650, description="Days until it expires (LAB_TOKEN_DAYS if omitted)"
    )


class TokenOut(BaseModel):
    username: str
    id: int
    token: str = Field(description="Shown once; only its hash is stored")
    expires_at: datetime


class TokenInfo(BaseModel):
    """A token as listed: never the secret."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    label: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    state: str = Field(description="active, expired or revoked")


class RolesIn(BaseModel):
    roles: list[str] = Field(min_length=1)


class AccountChange(BaseModel):
    """A change to the caller's own account: who gave or took which roles, when."""

    at: datetime
    action: str
    by: str
    roles_before: list[str] | None
    roles_after: list[str] | None


class MeOut(BaseModel):
    username: str
    roles: list[str]
    permissions: list[str]
    account_changes: list[AccountChange] = Field(
        default_factory=list, description="Grants of roles and other changes, newest first"
    )
