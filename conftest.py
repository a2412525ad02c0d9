"""Root pytest configuration: real PostgreSQL and Redis fixtures for every test."""

pytest_plugins = ["tests.helpers.fixtures"]
