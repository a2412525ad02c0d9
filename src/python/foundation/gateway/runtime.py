"""What the gateway opens at start-up and closes at shutdown: the upstream HTTP pool,
Redis, the token verifier and the rate limiter. The pipeline reads them through here."""

from __future__ import annotations

from contextlib import AsyncExitStack
from types import TracebackType

import aiohttp
import redis.asyncio as aioredis

from foundation.auth.denylist import SessionDenyList
from foundation.auth.keys import JwksKeySource
from foundation.auth.verifier import TokenVerifier
from foundation.gateway.rate_limit import RedisRateLimiter
from foundation.gateway.redis_status import RedisStatus
from foundation.gateway.settings import GatewaySettings
from foundation.gateway.upstream_http import UpstreamPool
from foundation.gateway.upstreams import Upstream, create_http_session, upstreams_from
from foundation.shared.redis import create_redis, create_redis_pipe
from foundation.shared.redis_pipe import RedisPipe


class NotStarted(RuntimeError):
    pass


class GatewayRuntime:
    """Built with the app, before start-up (the pipeline holds it); ``async with`` opens
    everything and closes it again, last opened first."""

    def __init__(self, settings: GatewaySettings, token_verifier: TokenVerifier | None = None) -> None:
        self.settings = settings
        self.upstreams: dict[str, Upstream] = upstreams_from(settings)
        self.redis_status = RedisStatus()
        self._given_verifier = token_verifier
        self._http: aiohttp.ClientSession | None = None  # health checks, the OpenAPI merge
        self._pool: UpstreamPool | None = None  # proxied requests
        self._redis: aioredis.Redis | None = None
        self._verifier: TokenVerifier | None = None
        self._key_source: JwksKeySource | None = None
        self._denylist: SessionDenyList | None = None
        self._limiter: RedisRateLimiter | None = None
        self._pipe: RedisPipe | None = None  # rate-limit script and deny-list reads
        self._opened = AsyncExitStack()

    async def __aenter__(self) -> GatewayRuntime:
        # What opened before a failure is closed again; on success, ``__aexit__`` closes it.
        async with AsyncExitStack() as stack:
            self._open(stack)
            self._opened = stack.pop_all()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        opened, self._opened = self._opened, AsyncExitStack()
        try:
            await opened.aclose()
        finally:
            self._http = self._pool = self._redis = self._pipe = self._key_source = None
            self._verifier = self._denylist = self._limiter = None

    def _open(self, stack: AsyncExitStack) -> None:
        settings = self.settings
        self._http = create_http_session(settings)
        stack.push_async_callback(self._http.close)
        self._pool = UpstreamPool(
            limit=settings.upstream_pool_size,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_read_timeout,
            keepalive_timeout=settings.upstream_keepalive_timeout,
            queue_timeout=settings.upstream_queue_timeout,
        )
        stack.push_async_callback(self._pool.close)
        # Short timeouts: a hung Redis must cost a request milliseconds, not seconds. The
        # edge's calls are bounded as a whole (the pipe's ``call_timeout``; ``asyncio.timeout``
        # around redis-py's) rather than per socket operation: redis-py runs every write under
        # a socket timeout in ``asyncio.wait_for``, an extra task per command on Python 3.11.
        # A timed-out call drops its connection.
        self._redis = create_redis(
            settings, socket_connect_timeout=settings.redis_timeout, socket_timeout=None
        )
        stack.push_async_callback(self._redis.aclose)
        if self._given_verifier is not None:
            self._verifier = self._given_verifier  # the caller's to close
        else:
            self._key_source = JwksKeySource(
                settings.effective_jwks_url, min_refresh_interval=settings.jwks_refresh_interval
            )
            stack.push_async_callback(self._key_source.aclose)
            self._verifier = TokenVerifier(
                self._key_source, issuer=settings.jwt_issuer, audience=settings.jwt_audience
            )
        self._pipe = create_redis_pipe(
            settings, connect_timeout=settings.redis_timeout, call_timeout=settings.redis_timeout
        )
        stack.push_async_callback(self._pipe.aclose)
        # Read over the pipe (the rate-limit script checks it there too when limits are on);
        # the gateway never writes the deny-list.
        self._denylist = SessionDenyList(self._redis, settings.redis_key_prefix, reads=self._pipe)
        self._limiter = RedisRateLimiter(self._pipe)

    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise NotStarted("the gateway's lifespan has not started")
        return self._http

    def pool(self) -> UpstreamPool:
        if self._pool is None:
            raise NotStarted("the gateway's lifespan has not started")
        return self._pool

    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise NotStarted("the gateway's lifespan has not started")
        return self._redis

    def verifier(self) -> TokenVerifier:
        if self._verifier is None:
            raise NotStarted("the gateway's lifespan has not started")
        return self._verifier

    def denylist(self) -> SessionDenyList:
        if self._denylist is None:
            raise NotStarted("the gateway's lifespan has not started")
        return self._denylist

    def limiter(self) -> RedisRateLimiter:
        if self._limiter is None:
            raise NotStarted("the gateway's lifespan has not started")
        return self._limiter
