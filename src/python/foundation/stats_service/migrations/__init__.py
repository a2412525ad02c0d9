"""Alembic migrations of the stats-service database."""
