"""Alembic migrations of the auth-service database: the revisions in ``versions/``, and the
metadata they build. The environment and the runner are ``foundation.database.migrations``."""

from foundation.auth_service.models import Base

metadata = Base.metadata
