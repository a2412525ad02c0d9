"""The local stack end to end: start it, use it through the gateway, reload it, stop it.

The stack's entry point runs as a subprocess on free ports, from the source tree this test
imports (under Pants, the sandbox: so this test's target must depend on every service, as
//:dev does), with embedded PostgreSQL and Redis, or the servers DATABASE_URL / REDIS_URL
name (then in databases and a key prefix of its own, removed afterwards).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from foundation.database.provisioning import drop_database, with_database
from foundation.devstack.infrastructure import database_base, database_name
from foundation.devstack.paths import package_source_dir
from foundation.devstack.plan import child_pythonpath
from foundation.devstack.services import SERVICES

READY_TIMEOUT = 120.0


class RunningStack:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._new.put(line)

    def wait_for(self, text: str, timeout: float = READY_TIMEOUT, after: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if text in line:
                    return line
            if self.proc.poll() is not None and self._new.empty():
                break
            with contextlib.suppress(queue.Empty):
                self._new.get(timeout=0.2)
        output = "\n".join(self.lines[-60:])
        raise AssertionError(f"no line with {text!r} (exit code {self.proc.poll()}); last output:\n{output}")

    def url_of(self, name: str) -> str:
        for line in self.lines:
            fields = line.split("|", 1)[-1].split()
            if fields and fields[0] == name:
                return fields[1]
        raise AssertionError(f"{name} is not in the table")

    def descendants(self) -> list[psutil.Process]:
        return list(psutil.Process(self.proc.pid).children(recursive=True))

    def terminate(self, timeout: float = 15.0) -> float:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        return time.monotonic() - started


def service_pids(stack: RunningStack, package: str) -> set[int]:
    return {
        p.pid
        for p in psutil.Process(stack.proc.pid).children()
        if f"foundation.{package}." in " ".join(p.cmdline())
    }


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    left = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(process)
        except psutil.NoSuchProcess:
            pass
    return left


def poll(fetch, done, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """``fetch()`` until ``done(answer)``; the last answer either way."""
    deadline = time.monotonic() + timeout
    answer = fetch()
    while not done(answer) and time.monotonic() < deadline:
        time.sleep(0.1)
        answer = fetch()
    return answer


def use_the_api_through(gateway: str) -> None:
    """Register, log in, and read the timeline and stats the account events produced."""
    email = f"dev-{uuid.uuid4().hex[:8]}@example.com"
    password = "correct horse battery staple"
    with httpx.Client(base_url=gateway, timeout=10) as client:
        registered = client.post("/auth/register", json={"email": email, "password": password})
        assert registered.status_code == 201, registered.text
        assert registered.json()["email"] == email
        assert client.post("/auth/register", json={"email": email, "password": password}).status_code == 409
        wrong = client.post("/auth/login", json={"email": email, "password": "not the password"})
        assert wrong.status_code == 401
        assert wrong.json()["code"] == "invalid_credentials"
        login = client.post("/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        tokens = login.json()
        assert tokens["token_type"] == "Bearer"
        assert tokens["refresh_token"]
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}

        assert client.get("/history").status_code == 401
        history = poll(
            lambda: client.get("/history", headers=auth),
            lambda r: {"user.registered", "user.logged_in"} <= {i["type"] for i in r.json().get("items", [])},
        )
        assert history.status_code == 200, history.text
        assert {"user.registered", "user.logged_in"} <= {item["type"] for item in history.json()["items"]}

        stats = poll(lambda: client.get("/stats/me", headers=auth), lambda r: r.json().get("logins") == 1)
        assert stats.status_code == 200, stats.text
        assert stats.json()["user_id"] == registered.json()["id"]
        assert stats.json()["logins"] == 1


@pytest.fixture()
def workdir() -> Iterator[Path]:
    """A folder embedded PostgreSQL can use when it runs as an unprivileged user."""
    with tempfile.TemporaryDirectory(prefix="foundation-devstack-") as folder:
        os.chmod(folder, 0o755)  # noqa: S103 - PostgreSQL may run as another user
        yield Path(folder)


@pytest.fixture()
def stack_env() -> Iterator[dict[str, str]]:
    """The environment to start a stack with: its own databases and Redis keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVSTACK_", "FOUNDATION_REPO"))}
    env.update(LOG_FORMAT="json", NO_COLOR="1", ENVIRONMENT="development")
    server = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    base = f"devstack_{uuid.uuid4().hex[:10]}"
    prefix = f"test:{base}:"
    if server:
        env["DATABASE_URL"] = with_database(server, base)
    if redis_url:
        env["REDIS_KEY_PREFIX"] = prefix
    yield env
    if server:
        for service in SERVICES:
            if service.has_database:
                drop_database(
                    with_database(server, database_name(database_base(env["DATABASE_URL"]), service))
                )
    if redis_url:
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def start(env: dict[str, str], *args: str, pythonpath: Path, cwd: Path) -> RunningStack:
    env = {**env, "PYTHONPATH": child_pythonpath(pythonpath)}  # the sources first, then what we import
    proc = subprocess.Popen(
        [sys.executable, "-m", "foundation.devstack", "--free-ports", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return RunningStack(proc)


@pytest.fixture()
def stopped_at_end() -> Iterator[list[RunningStack]]:
    stacks: list[RunningStack] = []
    yield stacks
    for stack in stacks:
        if stack.proc.poll() is None:
            stack.proc.kill()
            stack.proc.wait()


def test_stack_serves_through_the_gateway_and_sigterm_leaves_no_process(
    stack_env: dict[str, str], workdir: Path, stopped_at_end: list[RunningStack]
) -> None:
    stack = start(
        stack_env,
        "--no-reload",
        "--replicas",
        "2",
        "--data-dir",
        str(workdir / "data"),
        pythonpath=package_source_dir(),
        cwd=workdir,
    )
    stopped_at_end.append(stack)
    stack.wait_for("stack ready")
    gateway = stack.url_of("gateway-1")
    for name in ("gateway-2", "auth-service-1", "auth-service-2", "history-service", "stats-service"):
        assert httpx.get(stack.url_of(name) + "/health").json()["status"] == "ok"
    assert httpx.get(gateway + "/health").json()["status"] == "ok"
    use_the_api_through(gateway)

    children = stack.descendants()
    services = [p for p in children if any(".main" in part for part in p.cmdline())]
    assert len(services) == 12  # 6 instances, each a Granian main process and its worker

    seconds = stack.terminate()
    assert stack.proc.returncode == 0
    assert seconds < 10
    left = alive(children)
    assert left == [], [p.cmdline() for p in left]
    assert "stopped" in stack.lines[-1]


def test_edited_source_is_served_after_reload(
    stack_env: dict[str, str], workdir: Path, stopped_at_end: list[RunningStack]
) -> None:
    copy = workdir / "src"
    shutil.copytree(package_source_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    stack = start(
        stack_env,
        "--only",
        "history",
        "--only",
        "stats",
        "--data-dir",
        str(workdir / "data"),
        pythonpath=copy,
        cwd=workdir,
    )
    stopped_at_end.append(stack)
    stack.wait_for("stack ready")
    history = stack.url_of("history-service")
    stats = stack.url_of("stats-service")
    assert httpx.get(history + "/health").json() == {"status": "ok"}
    stats_pids = service_pids(stack, "stats_service")
    history_pids = service_pids(stack, "history_service")

    # A library both use: both restart and serve the edit.
    mark = len(stack.lines)
    health = copy / "foundation" / "shared" / "health.py"
    source = health.read_text()
    assert 'return {"status": "ok"}' in source
    health.write_text(source.replace('return {"status": "ok"}', 'return {"status": "ok", "edited": "yes"}'))
    stack.wait_for("history-service reloaded", after=mark, timeout=60)
    stack.wait_for("stats-service reloaded", after=mark, timeout=60)
    assert httpx.get(history + "/health").json() == {"status": "ok", "edited": "yes"}
    assert httpx.get(stats + "/health").json() == {"status": "ok", "edited": "yes"}
    assert stats_pids.isdisjoint(service_pids(stack, "stats_service"))
    assert history_pids.isdisjoint(service_pids(stack, "history_service"))

    # One service's own route: only that service restarts.
    mark = len(stack.lines)
    stats_pids = service_pids(stack, "stats_service")
    api = copy / "foundation" / "history_service" / "api" / "history.py"
    assert "router = APIRouter(" in api.read_text()
    api.write_text(
        api.read_text() + "\n\n@router.get('/edited', include_in_schema=False)\nasync def edited() -> dict:\n"
        "    return {'edited': True}\n"
    )
    stack.wait_for("history-service reloaded", after=mark, timeout=60)
    assert httpx.get(history + "/history/edited").json() == {"edited": True}
    assert service_pids(stack, "stats_service") == stats_pids
    assert not any("restarting stats-service" in line for line in stack.lines[mark:])

    children = stack.descendants()
    stack.terminate()
    assert alive(children) == []
