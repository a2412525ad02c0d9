"""One OpenAPI document for the whole public API, merged from the services' own documents.

Paths are the same at the gateway as at each service (forwarded unchanged), so paths merge
as they are; a component name two services use for different schemas is renamed with the
service's name (and its ``$ref``s rewritten). Each proxied operation also gets the problems
the gateway itself can answer it with (rate limit, body limit, path check, the service away),
declared here the way the services declare theirs (``foundation.shared.openapi``). The result
is cached for a short while; a service that cannot be reached is left out and named in
``x-unavailable-services``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

import aiohttp

from foundation.gateway.runtime import GatewayRuntime
from foundation.shared.errors import (
    BadGateway,
    BadRequest,
    GatewayTimeout,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
)
from foundation.shared.openapi import Raises, add_problem_responses, raises

INTERNAL_PATHS = frozenset({"/health", "/ready"})
COMPONENT_SECTIONS = ("schemas", "responses", "parameters", "requestBodies", "securitySchemes", "headers")
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

# What the gateway can answer any proxied operation with, before or instead of the service.
UPSTREAM_PROBLEMS = (
    raises(BadRequest, "content_length_mismatch", "client_disconnected"),
    raises(BadGateway, "upstream_unreachable", "upstream_error"),
    raises(ServiceUnavailable, "upstream_busy", "rate_limiter_unavailable"),
    raises(GatewayTimeout, "upstream_timeout"),
)
RATE_LIMITED = raises(TooManyRequests)
BODY_TOO_LARGE = raises(PayloadTooLarge)
BODY_TOO_SLOW = Raises(408, ("request_timeout",))  # proxy.RequestTimeout
DOT_SEGMENTS = raises(BadRequest, "invalid_path")  # a path parameter of `.` or `..`

GATEWAY_PATHS: dict[str, Any] = {
    "/health": {
        "get": {
            "tags": ["gateway"],
            "summary": "The gateway, each service and Redis",
            "operationId": "gateway_health",
            "responses": {
                "200": {"description": 'Everything answers: `{"status": "ok", ...}`'},
                "503": {"description": 'Something is down: `{"status": "degraded", "down": [...]}`'},
            },
        }
    }
}


def _rename_refs(document: dict[str, Any], section: str, old: str, new: str) -> dict[str, Any]:
    text = json.dumps(document)
    text = text.replace(f'"#/components/{section}/{old}"', f'"#/components/{section}/{new}"')
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def gateway_problems(path: str, operation: dict[str, Any], *, rate_limited: bool) -> list[Raises]:
    problems = list(UPSTREAM_PROBLEMS)
    if rate_limited:
        problems.append(RATE_LIMITED)
    if "requestBody" in operation:
        problems += [BODY_TOO_LARGE, BODY_TOO_SLOW]
    if "{" in path:
        problems.append(DOT_SEGMENTS)
    return problems


def merge_documents(
    documents: dict[str, dict[str, Any]], *, title: str, version: str, rate_limited: bool = True
) -> dict[str, Any]:
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "The public API of every service, as served through the gateway.",
        },
        "paths": copy.deepcopy(GATEWAY_PATHS),
        "components": {},
        "tags": [],
    }
    seen_tags: set[str] = set()
    for service, original in documents.items():
        document = copy.deepcopy(original)
        components = document.get("components", {})
        for section in COMPONENT_SECTIONS:
            target = merged["components"].setdefault(section, {})
            for name in list(components.get(section, {})):
                value = components[section][name]
                if name in target and target[name] != value:
                    new = f"{service.capitalize()}{name}"
                    document = _rename_refs(document, section, name, new)
                    components = document.get("components", {})
                    value = components[section][name]
                    name = new
                target[name] = value
        for path, operations in document.get("paths", {}).items():
            if path in INTERNAL_PATHS:
                continue
            for method, operation in operations.items():
                if method in HTTP_METHODS:
                    add_problem_responses(
                        operation, gateway_problems(path, operation, rate_limited=rate_limited)
                    )
            merged["paths"].setdefault(path, {}).update(operations)
        for tag in document.get("tags", []):
            if tag.get("name") not in seen_tags:
                seen_tags.add(tag.get("name"))
                merged["tags"].append(tag)
    merged["components"] = {section: value for section, value in merged["components"].items() if value}
    if not merged["tags"]:
        del merged["tags"]
    return merged


class OpenApiAggregator:
    def __init__(self, runtime: GatewayRuntime, *, title: str, version: str) -> None:
        self.runtime = runtime
        self.title = title
        self.version = version
        self._cached: dict[str, Any] | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def _fetch(self, url: str) -> dict[str, Any] | None:
        timeout = aiohttp.ClientTimeout(total=self.runtime.settings.health_timeout * 2)
        try:
            async with self.runtime.http().get(f"{url}/openapi.json", timeout=timeout) as response:
                if response.status != 200:
                    return None
                document = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return None
        return document if isinstance(document, dict) else None

    async def document(self) -> dict[str, Any]:
        async with self._lock:
            if self._cached is not None and time.monotonic() < self._expires:
                return self._cached
            names = list(self.runtime.upstreams)
            fetched = await asyncio.gather(*(self._fetch(self.runtime.upstreams[n].urls[0]) for n in names))
            documents = {name: doc for name, doc in zip(names, fetched, strict=True) if doc is not None}
            merged = merge_documents(
                documents,
                title=self.title,
                version=self.version,
                rate_limited=self.runtime.settings.rate_limit_enabled,
            )
            missing = [name for name in names if name not in documents]
            ttl = self.runtime.settings.openapi_cache_seconds
            if missing:
                merged["x-unavailable-services"] = missing
                ttl = min(ttl, 5.0)  # try again soon
            self._cached, self._expires = merged, time.monotonic() + ttl
            return merged
