"""What every service with a database opens at start-up, as the base of its lifespan state:
the engine and its sessions, Redis, and the token verifier and session deny-list that every
authenticated request reads (``foundation.auth.dependencies.AuthState``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from foundation.auth.denylist import SessionDenyList
from foundation.auth.dependencies import AuthState
from foundation.auth.verifier import TokenVerifier, service_verifier
from foundation.database.engine import create_engine, ping, session_factory
from foundation.shared.health import Check
from foundation.shared.lifespan import Lifespan, StateT
from foundation.shared.redis import create_redis
from foundation.shared.settings import ServiceSettings


class ServiceState(AuthState):
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: aioredis.Redis


def service_lifespan(
    settings: ServiceSettings,
    token_verifier: TokenVerifier | None,
    open_more: Callable[[AsyncExitStack, ServiceState], StateT],
) -> Lifespan[StateT]:
    """A lifespan that opens the ``ServiceState`` and then what ``open_more`` adds to it (on
    the same stack), and yields the state ``open_more`` returns."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[StateT]:
        async with AsyncExitStack() as stack:
            yield open_more(stack, open_service_state(stack, settings, token_verifier))

    return lifespan


def open_service_state(
    stack: AsyncExitStack, settings: ServiceSettings, token_verifier: TokenVerifier | None = None
) -> ServiceState:
    """Open the engine, Redis and the deny-list's connection on ``stack``, which closes them
    and the token verifier (``service_verifier``'s unless one is given) when the lifespan
    ends."""
    token_verifier = token_verifier or service_verifier(settings)
    engine = create_engine(settings)
    stack.push_async_callback(engine.dispose)
    redis = create_redis(settings)
    stack.push_async_callback(redis.aclose)
    stack.push_async_callback(token_verifier.aclose)
    denylist = SessionDenyList.for_service(settings, redis)
    stack.push_async_callback(denylist.aclose)
    return {
        "engine": engine,
        "sessions": session_factory(engine),
        "redis": redis,
        "token_verifier": token_verifier,
        "session_denylist": denylist,
    }


def ready_checks(state: ServiceState) -> dict[str, Check]:
    """What ``/ready`` pings: the database and Redis."""
    return {"database": lambda: ping(state["engine"]), "redis": state["redis"].ping}
