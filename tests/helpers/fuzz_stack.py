"""The whole stack on loopback for the schemathesis runs: auth-, history- and stats-service
and the gateway in front of them, each a real server (Granian) on real PostgreSQL and Redis.

Schemathesis drives its tests synchronously (``requests``), so the servers run in an event
loop of their own, on a background thread, for as long as the ``with`` block lasts. Tokens
are real ones from auth-service: every service and the gateway verify them against its JWKS,
as in production. Rate limits and the sign-in throttle are raised so that the run measures
the contract, not the limits (which have tests of their own).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from foundation.auth_service import migrations as auth_migrations
from foundation.auth_service.app import create_app as create_auth_app
from foundation.auth_service.repository import users
from foundation.database.engine import create_engine, session_factory
from foundation.database.provisioning import drop_database
from foundation.gateway.app import create_app as create_gateway_app
from foundation.history_service import migrations as history_migrations
from foundation.history_service.app import create_app as create_history_app
from foundation.history_service.settings import HistoryServiceSettings
from foundation.stats_service import migrations as stats_migrations
from foundation.stats_service.app import create_app as create_stats_app
from foundation.stats_service.settings import StatsServiceSettings
from tests.helpers.auth import TEST_AUDIENCE, TEST_ISSUER, bearer
from tests.helpers.databases import create_migrated_database
from tests.helpers.gateway_stack import gateway_settings, serve_asgi
from tests.helpers.users import STRONG_PASSWORD, auth_settings, unique_email

GENEROUS = 1_000_000


@dataclass
class FuzzStack:
    gateway: str
    services: dict[str, str]  # "auth" -> base URL, ...
    user_token: str = ""
    admin_token: str = ""
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)

    def run(self, coroutine: Any) -> Any:
        """Run ``coroutine`` in the servers' event loop; its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    def fresh_user_token(self) -> str:
        """A new account, signed in: for operations that end the caller's session or account."""
        return str(self.run(_signed_in(self.gateway, admin_of=None)))

    def headers(self, admin: bool = False) -> dict[str, str]:
        return bearer(self.admin_token if admin else self.user_token)


async def _signed_in(gateway: str, admin_of: str | None) -> str:
    email = unique_email("fuzz")
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        registered = await client.post("/auth/register", json={"email": email, "password": STRONG_PASSWORD})
        assert registered.status_code == 201, registered.text
        if admin_of is not None:  # as `auth_service grant-admin EMAIL` does
            engine = create_engine(HistoryServiceSettings(database_url=admin_of))
            try:
                async with session_factory(engine)() as db:
                    assert await users.add_role(db, email, "admin") is not None
                    await db.commit()
            finally:
                await engine.dispose()
        login = await client.post("/auth/login", json={"email": email, "password": STRONG_PASSWORD})
        assert login.status_code == 200, login.text
        return str(login.json()["access_token"])


async def _serve(
    databases: dict[str, str], redis_url: str, keys_dir: Path, ready: Future[FuzzStack], stop: asyncio.Event
) -> None:
    prefix = f"fuzz:{uuid.uuid4().hex[:12]}:"
    async with AsyncExitStack() as stack:
        auth_url = await stack.enter_async_context(
            serve_asgi(
                create_auth_app(
                    auth_settings(
                        databases["auth"],
                        redis_url,
                        prefix,
                        keys_dir,
                        login_max_failures_per_ip=GENEROUS,
                        login_max_failures_per_account=GENEROUS,
                        log_level="WARNING",
                    )
                )
            )
        )
        common: dict[str, Any] = {
            "environment": "test",
            "redis_url": redis_url,
            "redis_key_prefix": prefix,
            "jwks_url": f"{auth_url}/auth/.well-known/jwks.json",
            "jwt_issuer": TEST_ISSUER,
            "jwt_audience": TEST_AUDIENCE,
            "events_consumer_enabled": False,
            "log_level": "WARNING",
        }
        history_url = await stack.enter_async_context(
            serve_asgi(
                create_history_app(
                    HistoryServiceSettings(
                        database_url=databases["history"], events_relay_enabled=False, **common
                    )
                )
            )
        )
        stats_url = await stack.enter_async_context(
            serve_asgi(create_stats_app(StatsServiceSettings(database_url=databases["stats"], **common)))
        )
        gateway_url = await stack.enter_async_context(
            serve_asgi(
                create_gateway_app(
                    gateway_settings(
                        redis_url,
                        prefix,
                        auth=auth_url,
                        history=history_url,
                        stats=stats_url,
                        jwt_issuer=TEST_ISSUER,
                        jwt_audience=TEST_AUDIENCE,
                        rate_limit_user=f"{GENEROUS}/60",
                        rate_limit_anonymous=f"{GENEROUS}/60",
                        rate_limit_strict=f"{GENEROUS}/60",
                        log_level="WARNING",
                    )
                )
            )
        )
        fuzz = FuzzStack(
            gateway=gateway_url,
            services={"auth": auth_url, "history": history_url, "stats": stats_url},
            _loop=asyncio.get_running_loop(),
        )
        fuzz.user_token = await _signed_in(gateway_url, admin_of=None)
        fuzz.admin_token = await _signed_in(gateway_url, admin_of=databases["auth"])
        ready.set_result(fuzz)
        await stop.wait()


@contextmanager
def running_stack(postgres_url: str, redis_url: str, keys_dir: Path) -> Iterator[FuzzStack]:
    databases = {
        "auth": create_migrated_database(postgres_url, auth_migrations),
        "history": create_migrated_database(postgres_url, history_migrations),
        "stats": create_migrated_database(postgres_url, stats_migrations),
    }
    ready: Future[FuzzStack] = Future()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def main() -> None:
        async def serve() -> None:
            try:
                await _serve(databases, redis_url, keys_dir, ready, stop)
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)
                raise

        loop.run_until_complete(serve())

    thread = threading.Thread(target=main, name="fuzz-stack", daemon=True)
    thread.start()
    try:
        yield ready.result(timeout=120)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=60)
        loop.close()
        for url in databases.values():
            drop_database(url)


# -- schemathesis ---------------------------------------------------------------------------

# Requests that are valid by the schema yet refused, each for a documented reason the schema
# cannot state (a password's strength, an opaque cursor, a relative time bound, a state the
# server holds): the status and the only codes it may carry. Anything else refused is a
# finding (schemathesis' positive_data_acceptance).
OAUTH_FLOW_REFUSALS = frozenset(
    {
        "binding_missing",
        "binding_mismatch",
        "invalid_state",
        "invalid_nonce",
        "invalid_grant",
        "authorization_denied",
    }
)
MAILED_TOKEN_REFUSALS = frozenset({"invalid_token", "token_expired", "token_used"})
DOCUMENTED_REFUSALS: dict[str, dict[int, frozenset[str]]] = {
    "POST /auth/register": {422: frozenset({"weak_password"})},
    "GET /auth/sessions": {400: frozenset({"invalid_cursor"})},
    "GET /auth/oauth/{provider}/authorize": {400: frozenset({"redirect_uri_not_allowed"})},
    "POST /auth/oauth/{provider}/callback": {400: OAUTH_FLOW_REFUSALS},
    "POST /auth/oauth/{provider}/link": {400: OAUTH_FLOW_REFUSALS},
    # Any JSON object is a credential by the schema; only the WebAuthn ceremony tells.
    "POST /auth/mfa/verify": {400: frozenset({"invalid_passkey"})},
    "POST /auth/passkeys": {400: frozenset({"invalid_passkey"})},
    "POST /auth/passkeys/sign-in": {400: frozenset({"invalid_passkey"})},
    # A mailed token is valid by the schema as any string; only the server knows it.
    "POST /auth/email/verify": {400: MAILED_TOKEN_REFUSALS},
    "POST /auth/password/reset": {400: MAILED_TOKEN_REFUSALS, 422: frozenset({"weak_password"})},
    "POST /auth/password/change": {422: frozenset({"weak_password"})},
    "POST /auth/email/change": {422: frozenset({"email_unchanged"})},
    "GET /history": {400: frozenset({"invalid_cursor"}), 422: frozenset({"invalid_range"})},
    "POST /history": {
        413: frozenset({"event_data_too_large"}),
        422: frozenset({"occurred_at_too_old", "occurred_at_in_future"}),
    },
    "GET /stats/summary": {422: frozenset({"invalid_range"})},
}
ACCEPTED_BY_DEFAULT = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]

# Operations that end the caller's session or account: each call gets a new user.
ENDS_THE_CALLER = frozenset({"DELETE /auth/me", "POST /auth/logout-all"})
NEEDS_ADMIN = frozenset({"GET /stats/summary"})

SEED = 20_261_202


def schemathesis_config(max_examples: int) -> Any:
    """Every check schemathesis has (its `--checks all`) in every phase it has (examples,
    coverage, fuzzing, stateful), a fixed seed and deterministic data, no example database on
    disk; the refusals above allowed for valid data."""
    import schemathesis

    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "color": False,
            "request-timeout": 30,
            "workers": 1,
            "generation": {"max-examples": max_examples, "deterministic": True, "database": "none"},
            "checks": {"enabled": True},
            "operations": [
                {
                    "include-name": label,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": [*ACCEPTED_BY_DEFAULT, *map(str, refusals)]
                        }
                    },
                }
                for label, refusals in DOCUMENTED_REFUSALS.items()
            ],
        }
    )


def refusals_carry_their_documented_code(ctx: Any, response: Any, case: Any) -> bool | None:
    """A valid request refused with an allowed status must say the documented reason."""
    refusals = DOCUMENTED_REFUSALS.get(case.operation.label, {})
    allowed = refusals.get(response.status_code)
    if allowed is None or case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    code = (response.json() or {}).get("code")
    assert code in allowed, f"{case.operation.label}: {response.status_code} `{code}` for valid data"
    return True


@dataclass
class FuzzReport:
    operations: set[str] = field(default_factory=set)
    requests: int = 0
    failures: list[str] = field(default_factory=list)


def run_schemathesis(stack: FuzzStack, document_url: str, base_url: str, max_examples: int) -> FuzzReport:
    """Run schemathesis over the document at ``document_url`` against ``base_url`` as its CLI
    does (``schemathesis run --checks all``), signed in: what it tried, every failure and
    error it found."""
    import schemathesis
    from schemathesis.engine import Status, events, from_schema

    schema = schemathesis.openapi.from_url(document_url, config=schemathesis_config(max_examples))
    schema.config.update(base_url=base_url)

    @schema.auth(refresh_interval=None)
    class SignedIn:
        def get(self, case: Any, context: Any) -> str:
            label = case.operation.label
            if label in ENDS_THE_CALLER:
                return stack.fresh_user_token()
            return stack.admin_token if label in NEEDS_ADMIN else stack.user_token

        def set(self, case: Any, data: str, context: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    report = FuzzReport()
    found: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            report.requests += len(event.recorder.interactions)
            report.operations |= {
                f"{interaction.request.method} {interaction.request.uri.split('?')[0]}"
                for interaction in event.recorder.interactions.values()
            }
            if event.status in (Status.SUCCESS, Status.SKIP):
                continue
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    found.append(
                        f"{event.recorder.label} [{check.name}] {failure.title}: {failure.message}\n"
                        f"    {check.failure_info.code_sample}"
                    )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            error = getattr(event, "value", None) or getattr(event, "exception", None)
            found.append(f"{getattr(event, 'label', 'run')}: error {error!r}")
    report.failures = sorted(set(found))
    return report
