"""sessions.created_at index, for deleting the rows of sessions that have ended

Revision ID: 0003_sessions_created_at
Revises: 0002_user_display_name
Create Date: 2026-11-26 00:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_sessions_created_at"
down_revision: str | None = "0002_user_display_name"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_sessions_created_at", "sessions", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_created_at", table_name="sessions")
