"""Proving again who you are before a sensitive change (password change, email change).

The access token must be fresh (``auth_time``: api/accounts.py ``freshly_authenticated``),
and an account with a password must give it again. A wrong password counts against the
sign-in throttle (services/login_throttle.py) like a failed sign-in from that client, so a
stolen session cannot guess the password here any faster than at ``/auth/login``. This is
the one place a second factor would be asked for as well.
"""

from __future__ import annotations

from foundation.auth_service.models import User
from foundation.auth_service.services.login_throttle import LoginThrottle
from foundation.auth_service.services.passwords import PasswordHasher
from foundation.auth_service.services.sessions import ClientInfo
from foundation.shared.errors import Forbidden


def wrong_password() -> Forbidden:
    return Forbidden("The current password is not correct.", code="wrong_password")


class Reauthentication:
    def __init__(self, *, hasher: PasswordHasher, throttle: LoginThrottle) -> None:
        self.hasher = hasher
        self.throttle = throttle

    async def confirm_password(self, user: User, password: str | None, client: ClientInfo) -> None:
        """Raise 403 ``wrong_password`` unless ``password`` is the user's (429
        ``too_many_attempts`` after repeated failures). An account without a password (made by
        Google or Apple) has nothing to give here: its fresh sign-in is the proof."""
        if user.password_hash is None:
            return
        if not password:
            raise wrong_password()
        attempt = await self.throttle.reserve(user.email, client.ip)
        try:
            valid = await self.hasher.verify_async(user.password_hash, password)
        except Exception:
            await self.throttle.undecided(attempt)
            raise
        if not valid:
            raise wrong_password()  # the attempt keeps its count
        await self.throttle.succeeded(attempt)
