"""Request and response bodies of the auth API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field


class RegisterRequest(BaseModel):
    email: EmailStr = Field(max_length=320)
    # Length and strength are checked by the password policy (clear 422 weak_password).
    password: str = Field(min_length=1, max_length=4096)


class LoginRequest(BaseModel):
    # Not validated as an email: a malformed one simply fails like a wrong password.
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=4096)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    created_at: datetime


class CurrentUserOut(UserOut):
    roles: list[str]


class TokenResponse(BaseModel):
    """RFC 6749 section 5.1."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    refresh_token: str


class SessionOut(BaseModel):
    id: uuid.UUID = Field(description="The session id: the `sid` of its access tokens.")
    created_at: datetime = Field(description="When the user signed in.")
    last_used_at: datetime = Field(description="When its refresh token was last rotated.")
    expires_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool = Field(description="Whether this is the session of the token making the request.")
