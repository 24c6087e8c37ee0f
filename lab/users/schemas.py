"""Users and tokens in and out of the JSON API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class UserIn(BaseModel):
    username: str = Field(min_length=2, max_length=64)
    display_name: str = Field(default="", max_length=200)
    roles: list[str] = Field(min_length=1)
    password: str | None = Field(default=None, description="Omit for machine accounts")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    username: str
    display_name: str
    roles: list[str]
    active: bool


class TokenIn(BaseModel):
    label: str = Field(default="", max_length=100)


class TokenOut(BaseModel):
    username: str
    token: str = Field(description="Shown once; only its hash is stored")


class MeOut(BaseModel):
    username: str
    roles: list[str]
    permissions: list[str]
