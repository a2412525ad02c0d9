"""The account lifecycle's routes: ``/auth/email/...`` and ``/auth/password/...``.

Their services (email verification, password changes) and the mail relay that sends what
they write are opened by auth-service's lifespan (``services.lifecycle.open_lifecycle``).
"""

from __future__ import annotations

from fastapi import APIRouter

from foundation.auth_service.api import email, passwords

router = APIRouter()
router.include_router(email.router)
router.include_router(passwords.router)
