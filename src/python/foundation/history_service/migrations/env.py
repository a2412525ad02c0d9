"""Alembic environment: the shared async runner over this service's metadata."""

from foundation.database.migrations import run_env
from foundation.history_service.models import Base

run_env(Base.metadata)
