"""The event schema every producer and consumer shares (documented in docs/events.md).

On the Redis stream each event is one entry whose fields are strings:
``id`` (UUID), ``type``, ``user_id`` (UUID or empty), ``occurred_at`` (ISO 8601, UTC),
``data`` (JSON object), ``version`` (integer, the schema version of ``data`` for that type).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

STREAM = "events"
DEAD_LETTER_STREAM = "events:dead"

# Event types auth-service publishes.
USER_REGISTERED = "user.registered"
USER_LOGGED_IN = "user.logged_in"
USER_LOGIN_FAILED = "user.login_failed"
USER_DELETED = "user.deleted"
TOKEN_REFRESHED = "token.refreshed"  # noqa: S105 - an event name, not a secret
REFRESH_TOKEN_REUSED = "token.reuse_detected"  # noqa: S105
USER_LOGGED_OUT = "user.logged_out"
SESSION_REVOKED = "session.revoked"
OAUTH_LINKED = "oauth.linked"
OAUTH_UNLINKED = "oauth.unlinked"
# Second factors: data = {"factor": "totp" | "passkey"} (+ "passkey_id"); a wrong one:
# {"method", "ip"}; a recovery code spent: {"remaining"}; a new set: {"count"}.
MFA_FACTOR_ADDED = "mfa.factor_added"
MFA_FACTOR_REMOVED = "mfa.factor_removed"
MFA_FAILED = "mfa.failed"
MFA_RECOVERY_CODE_USED = "mfa.recovery_code_used"
MFA_RECOVERY_CODES_REPLACED = "mfa.recovery_codes_replaced"

# The account lifecycle (no addresses in the data): an address confirmed ({"email_change":
# whether it was a new address}), a change of address asked for ({"ip"}) and made ({}), a
# reset link asked for ({"ip"}) and used ({"sessions_ended"}), a password changed by its
# owner ({"sessions_ended": the other sessions}).
USER_EMAIL_VERIFIED = "user.email_verified"
USER_EMAIL_CHANGE_REQUESTED = "user.email_change_requested"
USER_EMAIL_CHANGED = "user.email_changed"
USER_PASSWORD_RESET_REQUESTED = "user.password_reset_requested"  # noqa: S105 - an event name
USER_PASSWORD_RESET_COMPLETED = "user.password_reset_completed"  # noqa: S105
USER_PASSWORD_CHANGED = "user.password_changed"  # noqa: S105

# Published by history-service when a client records its own event (POST /history):
# data = {"type": <the client's event type>}; the event id is the stored history entry's id.
HISTORY_RECORDED = "history.recorded"

# Namespaces only services publish in; a client's own event types may not use them.
SYSTEM_NAMESPACES = frozenset({"user", "token", "session", "oauth", "mfa", "history"})


class Event(BaseModel):
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    user_id: uuid.UUID | None = None
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    data: dict[str, Any] = Field(default_factory=dict)
    version: int = 1

    def to_fields(self) -> dict[str, str]:
        return event_fields(self.id, self.type, self.user_id, self.occurred_at, self.data, self.version)

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes] | dict[str, str]) -> Event:
        """Parse a stream entry; raises ``ValueError`` for a malformed one.

        The hot path of every consumer: the fields are parsed and checked here by hand and
        the model is built without a second (pydantic) validation pass.
        """
        decoded = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()
        }
        try:
            type_ = decoded["type"]
            user_id = decoded.get("user_id")
            data = json.loads(decoded.get("data") or "{}")
            if not isinstance(data, dict):
                raise TypeError("data is not a JSON object")
            return cls.model_construct(
                id=uuid.UUID(decoded["id"]),
                type=type_,
                user_id=uuid.UUID(user_id) if user_id else None,
                occurred_at=datetime.fromisoformat(decoded["occurred_at"]),
                data=data,
                version=int(decoded.get("version") or 1),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed event: {exc}") from exc


FIELDS_PER_EVENT = 6  # the keys of ``event_fields``


def event_fields(
    id: uuid.UUID,
    type: str,
    user_id: uuid.UUID | None,
    occurred_at: datetime,
    data: dict[str, Any] | None,
    version: int,
) -> dict[str, str]:
    """The stream entry of an event (what ``Event.to_fields`` returns, without a model)."""
    return {
        "id": str(id),
        "type": type,
        "user_id": str(user_id) if user_id else "",
        "occurred_at": occurred_at.astimezone(UTC).isoformat(),
        "data": json.dumps(data or {}, separators=(",", ":"), default=str),
        "version": str(version),
    }
