"""The pytest plugin every test gets (see the root conftest.py)."""

from tests.helpers.databases import redis_prefix
from tests.helpers.servers import _embedded_root, postgres_url, redis_url

__all__ = ["_embedded_root", "postgres_url", "redis_prefix", "redis_url"]
