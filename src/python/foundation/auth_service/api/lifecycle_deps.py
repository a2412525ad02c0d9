"""The account lifecycle's services, as route dependencies (set up by api/lifecycle.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from foundation.auth_service.services.email_verification import EmailVerification
from foundation.auth_service.services.password_changes import PasswordChanges


async def get_verification(request: Request) -> EmailVerification:
    service: EmailVerification = request.app.state.email_verification
    return service


async def get_passwords(request: Request) -> PasswordChanges:
    service: PasswordChanges = request.app.state.password_changes
    return service


Verification = Annotated[EmailVerification, Depends(get_verification)]
Passwords = Annotated[PasswordChanges, Depends(get_passwords)]
