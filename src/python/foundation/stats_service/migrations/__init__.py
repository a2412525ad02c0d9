"""Alembic migrations of the stats-service database: the revisions in ``versions/``, and the
metadata they build. The environment and the runner are ``foundation.database.migrations``."""

from foundation.stats_service.models import Base

metadata = Base.metadata
