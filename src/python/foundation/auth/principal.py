"""Who a verified access token speaks for."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    session_id: uuid.UUID
    roles: frozenset[str]
    token_id: str
    expires_at: int  # epoch seconds

    def has_role(self, role: str) -> bool:
        return role in self.roles
