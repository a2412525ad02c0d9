"""users.display_name (the name Google or Apple shared)

Revision ID: 0002_user_display_name
Revises: 0001_initial
Create Date: 2026-01-02 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_user_display_name"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("display_name", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "display_name")
