"""The services behind the gateway: their base URLs, and the aiohttp session the gateway
uses to reach them for ``/health`` and the OpenAPI merge. Proxied requests go through
``upstream_http.UpstreamPool`` instead (why: see that module).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import aiohttp

from foundation.gateway.settings import GatewaySettings
from foundation.gateway.upstream_http import Base


class Upstream:
    """One service: its name and base URLs, picked round-robin (dev stack replicas)."""

    def __init__(self, name: str, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError(f"{name}: no URL")
        self.name = name
        self.urls = tuple(url.rstrip("/") for url in urls)
        # Parsed here, once: a URL the proxy cannot use stops the gateway at start-up.
        self._cycle = itertools.cycle([Base.parse(url) for url in self.urls])

    def pick(self) -> Base:
        return next(self._cycle)


def upstreams_from(settings: GatewaySettings) -> dict[str, Upstream]:
    return {
        "auth": Upstream("auth", settings.auth_url),
        "history": Upstream("history", settings.history_url),
        "stats": Upstream("stats", settings.stats_url),
    }


def create_http_session(settings: GatewaySettings) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=settings.upstream_pool_size,
        limit_per_host=0,
        keepalive_timeout=settings.upstream_keepalive_timeout,
        ttl_dns_cache=300,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=settings.upstream_connect_timeout,
            sock_connect=settings.upstream_connect_timeout,
            sock_read=settings.upstream_read_timeout,
        ),
        auto_decompress=False,  # bodies pass through as the service encoded them
        cookie_jar=aiohttp.DummyCookieJar(),  # a gateway must not keep one client's cookies
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        raise_for_status=False,
    )
