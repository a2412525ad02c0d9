"""Alembic environment: the shared async runner over this service's metadata."""

from foundation.auth_service.models import Base
from foundation.database.migrations import run_env

run_env(Base.metadata)
