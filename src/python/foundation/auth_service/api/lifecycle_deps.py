"""The account lifecycle's services, as route dependencies (from the lifespan state)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from foundation.auth_service.lifespan import State
from foundation.auth_service.services.email_verification import EmailVerification
from foundation.auth_service.services.password_changes import PasswordChanges
from foundation.shared.lifespan import lifespan_state


async def get_verification(request: Request) -> EmailVerification:
    return lifespan_state(request, State)["email_verification"]


async def get_passwords(request: Request) -> PasswordChanges:
    return lifespan_state(request, State)["password_changes"]


Verification = Annotated[EmailVerification, Depends(get_verification)]
Passwords = Annotated[PasswordChanges, Depends(get_passwords)]
