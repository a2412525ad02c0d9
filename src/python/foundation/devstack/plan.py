"""Which processes run on which ports, and the environment each one gets."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from foundation.devstack.embedded import free_port
from foundation.devstack.options import StackOptions
from foundation.devstack.services import AUTH, GATEWAY, REPLICA_PORT_STEP, SERVICES, Instance, Service

JWKS_PATH = "/auth/.well-known/jwks.json"


def plan_instances(options: StackOptions, pick_port: Callable[[], int] = free_port) -> list[Instance]:
    """Every instance of every service, run or not: the gateway must know where all live."""
    instances = []
    for service in SERVICES:
        count = options.replicas if service.scalable else 1
        base = options.ports[service.name]
        for replica in range(1, count + 1):
            port = base + (replica - 1) * REPLICA_PORT_STEP if base else pick_port()
            instances.append(Instance(service, replica, port, count))
    return instances


def instances_of(instances: Iterable[Instance], service: Service) -> list[Instance]:
    return [i for i in instances if i.service == service]


def child_pythonpath(source_dir: Path, path: Iterable[str] = ()) -> str:
    """The source tree first (so edits there are what runs), then what the runner can import."""
    entries: list[str] = []
    for entry in [str(source_dir), *(path or sys.path)]:
        if entry and entry not in entries and os.path.exists(entry):
            entries.append(entry)
    return os.pathsep.join(entries)


def base_env(options: StackOptions, environ: Mapping[str, str], pythonpath: str) -> dict[str, str]:
    env = {k: v for k, v in environ.items() if k not in {"DATABASE_URL", "PORT", "HOST", "PYTHONHOME"}}
    env.update(PYTHONPATH=pythonpath, PYTHONUNBUFFERED="1", LOG_FORMAT=options.log_format)
    return env


def instance_env(
    instance: Instance,
    instances: list[Instance],
    *,
    common: Mapping[str, str],
    database_url: str | None,
    redis_url: str,
    data_dir: Path,
    smtp_url: str | None = None,
) -> dict[str, str]:
    auth = instances_of(instances, AUTH)
    gateway = instances_of(instances, GATEWAY)
    env = dict(common)
    env.update(
        REDIS_URL=redis_url,
        JWKS_URL=auth[0].url + JWKS_PATH,
        JWT_ISSUER=common.get("JWT_ISSUER") or f"{gateway[0].url}/auth",
        JWT_KEYS_DIR=str(data_dir / "keys"),
        OAUTH_DATA_DIR=str(data_dir),  # a generated development token-encryption key lives here
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    if smtp_url and instance.service == AUTH:
        env["SMTP_URL"] = smtp_url
    if instance.service == GATEWAY:
        env["GATEWAY_PORT"] = str(instance.port)
        for service in SERVICES:
            if service.url_env:
                env[service.url_env] = ",".join(i.url for i in instances_of(instances, service))
    return env
