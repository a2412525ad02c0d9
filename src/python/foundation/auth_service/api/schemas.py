"""Request and response bodies of the auth API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

# What any password policy accepts (PASSWORD_MIN_LENGTH >= 8, PASSWORD_MAX_LENGTH <= 1024):
# documented as the schema's bounds, so that a password outside them is refused whatever the
# deployment's policy. The policy itself answers (422 `weak_password`, saying what is wrong).
PASSWORD_SCHEMA_MIN = 8
PASSWORD_SCHEMA_MAX = 1024


class RegisterRequest(BaseModel):
    email: EmailStr = Field(max_length=320)
    # Length and strength are checked by the password policy (clear 422 weak_password), so
    # the model itself only caps what it reads.
    password: str = Field(
        min_length=1,
        max_length=4096,
        description="8 to 128 characters by default (PASSWORD_MIN_LENGTH, PASSWORD_MAX_LENGTH; "
        "counted after NFKC normalisation) and not easy to guess (zxcvbn score of at least "
        "PASSWORD_MIN_SCORE, 2 by default): otherwise 422 `weak_password`, saying what is wrong.",
        json_schema_extra={"minLength": PASSWORD_SCHEMA_MIN, "maxLength": PASSWORD_SCHEMA_MAX},
    )


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
