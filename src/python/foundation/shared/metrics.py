"""Prometheus metrics: RED counters per route, and gauges read when Prometheus scrapes.

``MetricsMiddleware`` counts every HTTP request by route *template* (``/history/{event_id}``,
or for the gateway the upstream service: ``/auth``), never by raw path, so the label set
stays bounded; paths no route matched are one label, ``unmatched``. ``GET /metrics``
(``metrics_route``) answers the app's own ``CollectorRegistry`` in the text format; it is
left out of the OpenAPI document and of its own counts.

The gauges are read at scrape time from the app's lifespan state (the scrape's
``scope["state"]``, see ``foundation.shared.lifespan``): the SQLAlchemy pool of its
``engine``, the redis-py pool of its ``redis``, and the outbox backlog of any ``OutboxRelay``
in it (one indexed query, bounded by ``OUTBOX_QUERY_TIMEOUT``; NaN when it fails).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import ConnectionPool
from redis.observability.attributes import DB_CLIENT_CONNECTION_STATE as STATE
from redis.observability.attributes import ConnectionState
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foundation.shared.errors import problem, problem_response

METRICS_PATH = "/metrics"
UNMATCHED = "unmatched"
OUTBOX_QUERY_TIMEOUT = 1.0
# Counted up to this many: a count of a huge backlog would cost more than it tells.
OUTBOX_COUNT_CAP = 10_000
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    """The path template of the route FastAPI/Starlette matched, or ``UNMATCHED``."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class HttpMetrics:
    """The RED instruments of one app, in their own registry."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by route template and status.",
            ("service", "method", "route", "status"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time from the request's arrival to the end of its answer.",
            ("service", "method", "route"),
            buckets=BUCKETS,
            registry=self.registry,
        )
        # (method, route, status) -> (counter child, histogram child): ``labels()`` takes a
        # lock and builds a tuple each time; the cache is bounded as the labels are.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        # Normalised before the lookup: a client's made-up methods must not grow the cache.
        if method not in _METHODS:
            method = "OTHER"
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(self.service, method, route, str(status)),
                self.duration.labels(self.service, method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class MetricsMiddleware:
    """Pure ASGI: times each HTTP request and counts it by ``route_of(scope)`` (read after
    the app ran, once routing has filled the scope) and the answer's status; 500 when the
    app raised before answering."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: HttpMetrics,
        route_of: Callable[[Scope], str] = route_template,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        # Inner middleware may pass on a copy of the scope; a shared state dict still
        # carries what they put in it (the gateway's route) back out here.
        scope.setdefault("state", {})
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(scope["method"], self.route_of(scope), status, time.perf_counter() - started)


class StateCollector(Collector):
    """Pool gauges from the lifespan state at scrape time; ``refresh`` (awaited by the
    /metrics endpoint just before) takes that state and reads the outbox into ``outbox``."""

    def __init__(self, app: Any, service: str) -> None:
        self.app = app
        self.service = service
        self.state: Mapping[str, Any] = {}
        self.outbox: tuple[float, float] | None = None

    def _state(self, name: str) -> Any:
        return self.state.get(name)

    def relays(self) -> list[Any]:
        from foundation.events.relay import OutboxRelay

        return [value for value in self.state.values() if isinstance(value, OutboxRelay)]

    async def refresh(self, state: Mapping[str, Any]) -> None:
        self.state = state
        relays = self.relays()
        if not relays:
            self.outbox = None
            return
        relay = relays[0]
        table = relay.table.fullname
        query = text(
            f"SELECT (SELECT extract(epoch FROM now() - occurred_at) FROM {table} "  # noqa: S608
            f"WHERE published_at IS NULL ORDER BY seq LIMIT 1), "
            f"(SELECT count(*) FROM (SELECT 1 FROM {table} WHERE published_at IS NULL "
            f"LIMIT {OUTBOX_COUNT_CAP}) AS backlog)"
        )
        try:
            async with asyncio.timeout(OUTBOX_QUERY_TIMEOUT):
                async with relay.engine.connect() as connection:
                    lag, count = (await connection.execute(query)).one()
            self.outbox = (float(lag or 0.0), float(count))
        except (SQLAlchemyError, OSError, TimeoutError):  # a scrape answers even when the database does not
            self.outbox = (math.nan, math.nan)

    def collect(self) -> Iterable[Metric]:
        labels = ["service"]
        engine = self._state("engine")
        pool = getattr(engine, "pool", None)
        if pool is not None and hasattr(pool, "checkedout"):
            size = GaugeMetricFamily("db_pool_size", "Connections the DB pool keeps open.", labels=labels)
            size.add_metric([self.service], float(pool.size()))
            out = GaugeMetricFamily(
                "db_pool_checked_out", "DB pool connections in use right now.", labels=labels
            )
            out.add_metric([self.service], float(pool.checkedout()))
            yield size
            yield out
        redis_pool = getattr(self._state("redis"), "connection_pool", None)
        if redis_pool is not None:
            gauge = GaugeMetricFamily(
                "redis_pool_in_use", "Redis pool connections in use right now.", labels=labels
            )
            gauge.add_metric([self.service], float(redis_connections_in_use(redis_pool)))
            yield gauge
        if self.outbox is not None:
            lag = GaugeMetricFamily(
                "outbox_lag_seconds",
                "Age of the oldest unpublished outbox row (0 when none; NaN if unreadable).",
                labels=labels,
            )
            lag.add_metric([self.service], self.outbox[0])
            pending = GaugeMetricFamily(
                "outbox_unpublished",
                f"Unpublished outbox rows (counted up to {OUTBOX_COUNT_CAP}).",
                labels=labels,
            )
            pending.add_metric([self.service], self.outbox[1])
            yield lag
            yield pending


def redis_connections_in_use(pool: ConnectionPool) -> int:
    """The connections a redis-py pool has lent out, from ``get_connection_count()``: the
    public count behind redis-py's own OpenTelemetry pool metric, one ``(count, attributes)``
    pair per connection state."""
    used = ConnectionState.USED.value
    return sum(count for count, attributes in pool.get_connection_count() if attributes.get(STATE) == used)


def metrics_route(
    metrics: HttpMetrics, collector: StateCollector, *, refuse_forwarded: bool = False
) -> Route:
    """``GET /metrics``. With ``refuse_forwarded`` (the gateway, which the ingress exposes)
    a request that came through a proxy (it carries ``X-Forwarded-For`` or ``Forwarded``) is
    answered 404, so only a scraper that reaches the pod directly reads it."""
    metrics.registry.register(collector)

    async def endpoint(request: Request) -> Response:
        if refuse_forwarded and ("x-forwarded-for" in request.headers or "forwarded" in request.headers):
            body = problem(404, "not_found", None, "Not found.", request.url.path)
            return problem_response(body)
        await collector.refresh(request.scope.get("state", {}))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Route(METRICS_PATH, endpoint, methods=["GET"], include_in_schema=False)


def install_metrics(
    app: Any,
    service: str,
    *,
    route_of: Callable[[Scope], str] = route_template,
    refuse_forwarded: bool = False,
) -> HttpMetrics:
    """Add ``GET /metrics`` and the outermost ``MetricsMiddleware`` to a FastAPI app (call
    after its other ``add_middleware``)."""
    metrics = HttpMetrics(service)
    collector = StateCollector(app, service)
    app.router.routes.append(metrics_route(metrics, collector, refuse_forwarded=refuse_forwarded))
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics, route_of=route_of)
    return metrics
