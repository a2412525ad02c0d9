from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import InternalError
from starlette.applications import Starlette

from foundation.database.migrations import upgrade
from foundation.database.provisioning import drop_database, ensure_database, server_dsn, with_database
from foundation.devstack.embedded import free_port
from foundation.devstack.studio import (
    CONFIG_ENV,
    _engine,
    app_from_environment,
    configured_databases,
    create_studio_app,
    main,
    parse_args,
    service_bases,
    stack_databases,
)
from tests.helpers.apps import serve_app


@pytest.fixture(scope="module")
def server_url(postgres_url: str) -> Iterator[str]:
    """A base URL whose per-service databases exist, migrated, with one user."""
    url = with_database(postgres_url, f"studio_{uuid.uuid4().hex[:8]}")
    databases = configured_databases(url)
    for package, database in databases.items():
        ensure_database(database)
        upgrade(database, f"foundation.{package}.migrations")
    auth = databases["auth_service"]
    with psycopg.connect(server_dsn(auth, auth.rsplit("/", 1)[1]), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (id, email, password_hash) VALUES (gen_random_uuid(), 'ada@example.com', 'x')"
        )
    yield url
    for database in databases.values():
        drop_database(database)


def list_links(page: str) -> set[str]:
    return {link.rsplit("/admin/", 1)[1] for link in re.findall(r'href="([^"]*/list)"', page)}


async def test_every_table_of_every_service_is_listed_with_its_rows(server_url: str) -> None:
    tables = {
        f"{pkg.split('_')[0]}-{table.replace('_', '-')}/list"
        for pkg, base in service_bases().items()
        for table in base.metadata.tables
    }
    assert {"auth-users/list", "history-history-events/list", "stats-user-stats/list"} <= tables
    async with serve_app(create_studio_app(configured_databases(server_url))) as client:  # type: ignore[arg-type]
        home = await client.get("/", follow_redirects=True)
        assert home.status_code == 200
        assert list_links(home.text) == tables
        for link in sorted(tables):
            page = await client.get(f"/admin/{link}")
            assert page.status_code == 200, link
        users = await client.get("/admin/auth-users/list")
    assert "ada@example.com" in users.text


async def test_read_only_by_default_in_the_ui_and_in_the_database(server_url: str) -> None:
    async with serve_app(create_studio_app(configured_databases(server_url))) as client:  # type: ignore[arg-type]
        users = await client.get("/admin/auth-users/list")
        create = await client.get("/admin/auth-users/create")
    assert "/admin/auth-users/create" not in users.text
    assert create.status_code == 403
    engine = _engine(configured_databases(server_url)["auth_service"], writable=False)
    try:
        with engine.begin() as conn, pytest.raises(InternalError, match="read-only transaction"):
            conn.execute(text("DELETE FROM users"))
    finally:
        engine.dispose()


async def test_write_mode_offers_editing(server_url: str) -> None:
    app = create_studio_app(configured_databases(server_url), writable=True)
    async with serve_app(app) as client:  # type: ignore[arg-type]
        create = await client.get("/admin/auth-users/create")
    assert create.status_code == 200


async def test_the_dev_inbox_is_served_beside_the_tables(server_url: str, tmp_path: Path) -> None:
    app = create_studio_app(configured_databases(server_url), mail_dir=tmp_path)
    async with serve_app(app) as client:  # type: ignore[arg-type]
        inbox = await client.get("/inbox/")
    assert inbox.status_code == 200
    assert "Dev inbox" in inbox.text


def test_databases_come_from_the_url_or_the_running_stack(tmp_path: Path) -> None:
    assert configured_databases("postgresql://u@h/shop") == {
        "auth_service": "postgresql+psycopg://u@h/shop_auth",
        "history_service": "postgresql+psycopg://u@h/shop_history",
        "stats_service": "postgresql+psycopg://u@h/shop_stats",
    }
    assert stack_databases(tmp_path) is None
    databases = {"auth_service": "postgresql://x/y"}
    (tmp_path / "stack.json").write_text(json.dumps({"pid": os.getpid(), "databases": databases}))
    assert stack_databases(tmp_path) == databases
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (tmp_path / "stack.json").write_text(json.dumps({"pid": int(dead.stdout), "databases": databases}))
    assert stack_databases(tmp_path) is None  # a killed stack's leftovers


def test_port_comes_from_the_flag_or_studio_port() -> None:
    assert parse_args([], {}).port == 8800
    assert parse_args([], {"STUDIO_PORT": "9999"}).port == 9999
    assert parse_args(["--port", "1234", "--write"], {}).write


def test_says_what_to_do_without_databases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(SystemExit, match="start the stack once"):
        main(["--data-dir", str(tmp_path)])


def test_studio_listens_on_loopback_only_and_stops_on_sigterm(server_url: str) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": server_url, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "foundation.devstack.studio", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/admin/auth-users/list", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert answer.status_code == 200
        assert "ada@example.com" in answer.text
        listening = [
            c.laddr
            for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            for c in p.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN
        ]
        assert listening
        assert {address.ip for address in listening} == {"127.0.0.1"}
    finally:
        proc.terminate()
        proc.wait(15)
    assert proc.returncode == 0


@pytest.mark.parametrize("source", ["DATABASE_URL", "stack.json"])
def test_main_serves_the_databases_it_finds_on_loopback(
    source: str,
    server_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    served: list[int] = []
    monkeypatch.setattr("foundation.devstack.studio.serve", served.append)  # the server is tested above
    monkeypatch.setenv(CONFIG_ENV, "")  # restored after the test; main() sets it for the worker
    monkeypatch.delenv("DATABASE_URL", raising=False)
    if source == "DATABASE_URL":
        monkeypatch.setenv("DATABASE_URL", server_url)
    else:
        state = {"pid": os.getpid(), "databases": configured_databases(server_url)}
        (tmp_path / "stack.json").write_text(json.dumps(state))
    main(["--data-dir", str(tmp_path), "--port", "8899"])
    assert served == [8899]
    config = json.loads(os.environ[CONFIG_ENV])
    assert config == {
        "databases": configured_databases(server_url),
        "writable": False,
        "mail_dir": str(tmp_path / "mail"),
    }
    assert isinstance(app_from_environment(), Starlette)  # what the worker will serve
    out = capsys.readouterr().out
    assert "studio: http://127.0.0.1:8899/admin/ (read-only)" in out
    assert "dev inbox: http://127.0.0.1:8899/inbox/" in out
