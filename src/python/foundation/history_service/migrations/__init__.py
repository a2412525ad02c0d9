"""Alembic migrations of the history-service database."""
