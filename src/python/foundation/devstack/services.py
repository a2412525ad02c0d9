"""The services the stack runs, and the processes (instances) it starts for them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Service:
    name: str  # the name in logs and tables: "auth-service"
    package: str  # foundation.<package>: "auth_service"
    short: str  # tag and --only alias: "auth"
    default_port: int
    port_env: str  # the variable that overrides the port: "AUTH_PORT"
    url_env: str | None  # how the gateway is told where it runs: "AUTH_URL"
    has_database: bool
    scalable: bool  # --replicas applies

    @property
    def module(self) -> str:
        return f"foundation.{self.package}.main"

    @property
    def migrations(self) -> str:
        return f"foundation.{self.package}.migrations"


GATEWAY = Service("gateway", "gateway", "gateway", 8000, "GATEWAY_PORT", None, False, True)
AUTH = Service("auth-service", "auth_service", "auth", 8001, "AUTH_PORT", "AUTH_URL", True, True)
HISTORY = Service(
    "history-service", "history_service", "history", 8002, "HISTORY_PORT", "HISTORY_URL", True, False
)
STATS = Service("stats-service", "stats_service", "stats", 8003, "STATS_PORT", "STATS_URL", True, False)

SERVICES: tuple[Service, ...] = (GATEWAY, AUTH, HISTORY, STATS)
# Each replica after the first listens this far above the previous one (8000, 8010, ...),
# so the replicas of gateway (…0) and auth-service (…1) never collide with each other.
REPLICA_PORT_STEP = 10


def find_service(name: str) -> Service:
    wanted = name.strip().lower().replace("_", "-")
    for service in SERVICES:
        if wanted in {service.name, service.package.replace("_", "-"), service.short}:
            return service
    choices = ", ".join(s.short for s in SERVICES)
    raise ValueError(f"unknown service {name!r}; choose from {choices}")


@dataclass(frozen=True)
class Instance:
    """One process of one service."""

    service: Service
    replica: int  # 1-based
    port: int
    replicas: int  # of this service, to name the instance

    @property
    def name(self) -> str:
        return self.service.name if self.replicas == 1 else f"{self.service.name}-{self.replica}"

    @property
    def tag(self) -> str:
        return self.service.short if self.replicas == 1 else f"{self.service.short}-{self.replica}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
