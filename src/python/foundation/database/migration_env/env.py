"""Alembic's environment for every service: ``alembic_config`` points Alembic here and at the
service's ``versions/``; the runner itself is ``foundation.database.migrations.run_env``."""

from foundation.database.migrations import run_env

run_env()
