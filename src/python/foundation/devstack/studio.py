"""The database studio: a local web UI over every service's tables (``./pants run //:studio``),
and beside it the dev inbox (``/inbox/``, devstack/inbox.py): the mail the stack caught.

The counterpart of Prisma Studio, built on sqladmin: one page per table of auth-service,
history-service and stats-service, with its rows, read-only unless started with
``--write``. It listens on 127.0.0.1 only.

Services never import each other; the studio imports the models of all three. It may: it
is a development tool beside the stack runner, not a service, nothing imports it, and no
service image contains it.

Which databases: those of ``DATABASE_URL`` when set (named as the stack names them), else
those of the running stack (its ``stack.json``), else the stack's embedded PostgreSQL,
started here on the stack's data folder while the stack is stopped.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import types
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Mount, Route

from foundation.database.engine import normalise_url
from foundation.database.provisioning import with_database
from foundation.devstack.embedded import EmbeddedPostgres
from foundation.devstack.inbox import create_inbox_app
from foundation.devstack.infrastructure import database_base, database_name
from foundation.devstack.paths import default_data_dir, repo_root
from foundation.devstack.runner import STATE_FILE
from foundation.devstack.services import SERVICES

HOST = "127.0.0.1"  # loopback only: the studio has no login
DEFAULT_PORT = 8800
BASE_URL = "/admin"
INBOX_URL = "/inbox"
SERVICE_MODELS = {
    "auth_service": "foundation.auth_service.models",
    "history_service": "foundation.history_service.models",
    "stats_service": "foundation.stats_service.models",
}


def service_bases() -> dict[str, type[DeclarativeBase]]:
    return {pkg: importlib.import_module(module).Base for pkg, module in SERVICE_MODELS.items()}


def model_views(package: str, base: type[DeclarativeBase], *, writable: bool) -> list[type[Any]]:
    """One sqladmin view per mapped table of one service, every column shown."""
    from sqladmin import ModelView

    service = next(s for s in SERVICES if s.package == package)
    views = []
    for mapper in sorted(base.registry.mappers, key=lambda m: str(m.class_.__tablename__)):
        table = str(mapper.class_.__tablename__)
        columns = [column.key for column in mapper.columns]

        def body(ns: dict[str, Any], table: str = table, columns: list[str] = columns) -> None:
            ns.update(
                name=table,
                name_plural=table,
                category=service.name,
                column_list=columns,
                column_details_list=columns,
                column_sortable_list=columns,
                can_create=writable,
                can_edit=writable,
                can_delete=writable,
                can_export=True,
                page_size=50,
            )

        view = types.new_class(f"{package}_{table}", (ModelView,), {"model": mapper.class_}, body)
        setattr(view, "identity", f"{service.short}-{table.replace('_', '-')}")  # noqa: B010 - names repeat
        views.append(view)
    return views


def _engine(url: str, *, writable: bool) -> Engine:
    options = {} if writable else {"options": "-c default_transaction_read_only=on"}
    return create_engine(normalise_url(url), pool_pre_ping=True, connect_args=options)


def create_studio_app(
    database_urls: Mapping[str, str], *, writable: bool = False, mail_dir: Path | None = None
) -> Starlette:
    """``database_urls``: service package -> URL of its database; ``mail_dir``: the stack's
    kept mail, shown by the dev inbox at ``/inbox/`` (devstack/inbox.py)."""
    from sqladmin import Admin

    bases = {pkg: base for pkg, base in service_bases().items() if pkg in database_urls}
    engines = {pkg: _engine(database_urls[pkg], writable=writable) for pkg in bases}

    async def home(_: Request) -> RedirectResponse:
        return RedirectResponse(f"{BASE_URL}/")

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        for engine in engines.values():
            engine.dispose()

    routes: list[BaseRoute] = [Route("/", home)]
    if mail_dir is not None:
        routes.append(Mount(INBOX_URL, app=create_inbox_app(mail_dir)))
    app = Starlette(routes=routes, lifespan=lifespan)
    binds: dict[Any, Engine] = {base: engines[pkg] for pkg, base in bases.items()}
    mode = "read and write" if writable else "read-only"
    admin = Admin(app, session_maker=sessionmaker(binds=binds), base_url=BASE_URL, title=f"Studio ({mode})")
    for pkg, base in bases.items():
        for view in model_views(pkg, base, writable=writable):
            admin.add_view(view)
    return app


def configured_databases(database_url: str) -> dict[str, str]:
    base = database_base(database_url)
    return {
        s.package: with_database(database_url, database_name(base, s)) for s in SERVICES if s.has_database
    }


def stack_databases(data_dir: Path) -> dict[str, str] | None:
    state = data_dir / STATE_FILE
    if not state.exists():
        return None
    recorded = json.loads(state.read_text())
    try:  # left behind by a stack that was killed: its servers are gone
        os.kill(int(recorded.get("pid", 0)) or -1, 0)
    except (ProcessLookupError, ValueError, TypeError):
        return None
    except PermissionError:
        pass  # alive, another user's
    databases = recorded.get("databases") or {}
    return {str(k): str(v) for k, v in databases.items()}


def parse_args(argv: Sequence[str] | None, environ: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="studio", description="A web UI over every service's database.")
    parser.add_argument(
        "--port", type=int, default=int(environ.get("STUDIO_PORT") or DEFAULT_PORT), help="[STUDIO_PORT]"
    )
    parser.add_argument("--write", action="store_true", help="allow creating, editing and deleting rows")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=environ.get("DEVSTACK_DATA_DIR") or None,
        help="the stack's data folder",
    )
    return parser.parse_args(argv)


CONFIG_ENV = "FOUNDATION_STUDIO_CONFIG"  # what main() chose, for the worker's factory


def app_from_environment() -> Starlette:
    """Granian's app factory, run in its worker: the databases and mode ``main`` chose."""
    config = json.loads(os.environ[CONFIG_ENV])
    mail_dir = config.get("mail_dir")
    return create_studio_app(
        config["databases"], writable=config["writable"], mail_dir=Path(mail_dir) if mail_dir else None
    )


def serve(port: int) -> None:
    """Granian's regular server, as the services run (its embedded server, tried first, is
    experimental and aborted now and then while stopping on SIGTERM). It handles SIGINT and
    SIGTERM itself and returns once its worker has stopped."""
    from granian import Granian
    from granian.constants import Interfaces

    Granian(
        "foundation.devstack.studio:app_from_environment",
        factory=True,
        address=HOST,
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        log_access=False,
    ).serve()


def main(argv: Sequence[str] | None = None) -> None:
    environ = os.environ
    args = parse_args(argv, environ)
    data_dir = (args.data_dir or default_data_dir(repo_root())).resolve()
    postgres: EmbeddedPostgres | None = None
    if environ.get("DATABASE_URL"):
        urls = configured_databases(environ["DATABASE_URL"])
    elif (running := stack_databases(data_dir)) is not None:
        urls = running
    elif (data_dir / "postgres" / "PG_VERSION").exists():
        postgres = EmbeddedPostgres(data_dir / "postgres").start()
        urls = configured_databases(postgres.url)
    else:
        sys.exit(
            f"no databases yet in {data_dir}: start the stack once (./pants run //:dev), or set DATABASE_URL"
        )
    try:
        mail_dir = data_dir / "mail"
        create_studio_app(urls, writable=args.write, mail_dir=mail_dir)  # a bad URL fails here
        os.environ[CONFIG_ENV] = json.dumps(
            {"databases": urls, "writable": args.write, "mail_dir": str(mail_dir)}
        )
        mode = "read and write" if args.write else "read-only"
        print(f"studio: http://{HOST}:{args.port}{BASE_URL}/ ({mode})", flush=True)
        print(f"dev inbox: http://{HOST}:{args.port}{INBOX_URL}/", flush=True)
        serve(args.port)
    finally:
        if postgres:
            postgres.stop()


if __name__ == "__main__":
    main()
