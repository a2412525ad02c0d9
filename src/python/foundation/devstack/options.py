"""The runner's options: command-line flags, each with an environment variable default.

See ``.env.example`` at the repository root for the variables and docs/development.md for
what they do.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from foundation.devstack.paths import default_data_dir, repo_root, source_dir
from foundation.devstack.services import SERVICES, Service, find_service

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class StackOptions:
    services: tuple[Service, ...]  # what to run, in start order
    replicas: int
    ports: Mapping[str, int]  # service name -> port of its first instance (0: any free port)
    data_dir: Path
    reset: bool
    reload: bool
    source_dir: Path
    database_url: str | None  # a server to use instead of the embedded one
    redis_url: str | None
    postgres_port: int  # embedded PostgreSQL (0: any free port)
    redis_port: int
    smtp_url: str | None  # a mail server to use instead of the stack's catcher
    smtp_port: int  # the catcher (0: any free port)
    log_format: str  # passed to the services as LOG_FORMAT
    color: bool
    ready_timeout: float


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    value = environ.get(name)
    return default if value is None or value == "" else value.strip().lower() in _TRUE


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return port


def _replicas(value: str) -> int:
    count = int(value)
    if not 1 <= count <= 16:
        raise argparse.ArgumentTypeError("--replicas takes 1 to 16")
    return count


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devstack",
        description="Run PostgreSQL, Redis and every service on this machine (see docs/development.md).",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SERVICE",
        help="run only this service (gateway, auth, history, stats); repeatable "
        "[DEVSTACK_ONLY, comma-separated]",
    )
    parser.add_argument(
        "--replicas",
        type=_replicas,
        default=_replicas(environ.get("DEVSTACK_REPLICAS") or "1"),
        help="processes of gateway and auth-service each, on their own ports [DEVSTACK_REPLICAS]",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=environ.get("DEVSTACK_DATA_DIR") or None,
        help="databases, Redis data and development keys (default: .devstack/ at the repository root) "
        "[DEVSTACK_DATA_DIR]",
    )
    parser.add_argument("--reset", action="store_true", help="delete the data folder first")
    parser.add_argument(
        "--reload",
        action=argparse.BooleanOptionalAction,
        default=_flag(environ, "DEVSTACK_RELOAD", True),
        help="restart a service when its sources change (default: on) [DEVSTACK_RELOAD]",
    )
    parser.add_argument(
        "--free-ports",
        action="store_true",
        default=_flag(environ, "DEVSTACK_FREE_PORTS", False),
        help="give every process a free port instead of 8000-8003 (tests) [DEVSTACK_FREE_PORTS]",
    )
    for service in SERVICES:
        parser.add_argument(
            f"--{service.short}-port",
            type=_port,
            dest=f"port_{service.package}",
            default=_port(environ.get(service.port_env) or str(service.default_port)),
            help=f"port of {service.name} [{service.port_env}, default {service.default_port}]",
        )
    parser.add_argument(
        "--postgres-port",
        type=_port,
        default=_port(environ.get("DEVSTACK_POSTGRES_PORT") or "0"),
        help="port of the embedded PostgreSQL (default: a free port) [DEVSTACK_POSTGRES_PORT]",
    )
    parser.add_argument(
        "--redis-port",
        type=_port,
        default=_port(environ.get("DEVSTACK_REDIS_PORT") or "0"),
        help="port of the embedded Redis (default: a free port) [DEVSTACK_REDIS_PORT]",
    )
    parser.add_argument(
        "--smtp-port",
        type=_port,
        default=_port(environ.get("DEVSTACK_SMTP_PORT") or "0"),
        help="port of the mail catcher, used when SMTP_URL is unset (default: a free port) "
        "[DEVSTACK_SMTP_PORT]",
    )
    parser.add_argument(
        "--log-format",
        choices=["console", "json"],
        default=environ.get("LOG_FORMAT") or None,
        help="log lines of the services (default: console on a terminal, else json) [LOG_FORMAT]",
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=float(environ.get("DEVSTACK_READY_TIMEOUT") or 90),
        help="seconds to wait for the stack to answer before warning [DEVSTACK_READY_TIMEOUT]",
    )
    return parser


def parse_options(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    cwd: Path | None = None,
    tty: bool | None = None,
) -> StackOptions:
    environ = os.environ if environ is None else environ
    tty = sys.stdout.isatty() if tty is None else tty
    parser = build_parser(environ)
    args = parser.parse_args(argv)

    names = list(args.only) or [n for n in (environ.get("DEVSTACK_ONLY") or "").split(",") if n.strip()]
    try:
        chosen = {find_service(name) for name in names}
    except ValueError as exc:
        parser.error(str(exc))
    services = tuple(s for s in SERVICES if s in chosen) if chosen else SERVICES

    ports = {s.name: 0 if args.free_ports else getattr(args, f"port_{s.package}") for s in SERVICES}
    root = repo_root(cwd)
    data_dir = (args.data_dir or default_data_dir(root)).resolve()
    log_format = args.log_format if args.log_format in {"console", "json"} else ("console" if tty else "json")
    color = tty and not environ.get("NO_COLOR") or bool(environ.get("FORCE_COLOR"))
    return StackOptions(
        services=services,
        replicas=args.replicas,
        ports=ports,
        data_dir=data_dir,
        reset=args.reset,
        reload=args.reload,
        source_dir=source_dir(root),
        database_url=environ.get("DATABASE_URL") or None,
        redis_url=environ.get("REDIS_URL") or None,
        postgres_port=args.postgres_port,
        redis_port=args.redis_port,
        smtp_url=environ.get("SMTP_URL") or None,
        smtp_port=args.smtp_port,
        log_format=log_format,
        color=color,
        ready_timeout=args.ready_timeout,
    )
