"""Alembic migrations of the auth-service database."""
