from __future__ import annotations

import fcntl
import io
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from foundation.database.provisioning import drop_database, with_database
from foundation.devstack.options import StackOptions, parse_options
from foundation.devstack.paths import package_source_dir
from foundation.devstack.runner import READY_LINE, STATE_FILE, Stack
from foundation.devstack.services import GATEWAY


class Output(io.StringIO):
    def wait_for(self, text: str, timeout: float = 90.0, after: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.getvalue().splitlines()[after:]:
                if text in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} in:\n{self.getvalue()}")

    def count(self) -> int:
        return len(self.getvalue().splitlines())


@pytest.fixture()
def stack_options(
    postgres_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> Iterator[StackOptions]:
    server = with_database(postgres_url, f"devstack_{uuid.uuid4().hex[:8]}")
    environ = {"DATABASE_URL": server, "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": redis_prefix}
    options = parse_options(
        ["--only", "history", "--free-ports", "--no-reload", "--data-dir", str(tmp_path / "data")],
        environ,
        cwd=tmp_path,
        tty=False,
    )
    yield options
    for suffix in ("auth", "history", "stats"):
        drop_database(f"{server}_{suffix}")


def run_in_thread(stack: Stack) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(stack.run()), daemon=True)
    thread.start()
    return thread, result


def test_stack_starts_reloads_and_stops_on_sigterm(stack_options: StackOptions, tmp_path: Path) -> None:
    copy = tmp_path / "src"
    shutil.copytree(package_source_dir(), copy, ignore=shutil.ignore_patterns("__pycache__", "test_*.py"))
    out = Output()
    stack = Stack(replace(stack_options, reload=True, source_dir=copy), out)
    thread, result = run_in_thread(stack)
    try:
        out.wait_for(READY_LINE)
        (instance,) = stack.processes
        state = (stack_options.data_dir / STATE_FILE).read_text()
        assert instance.url in state
        assert "history_service" in state
        assert httpx.get(instance.url + "/health").json() == {"status": "ok"}

        mark = out.count()
        health = copy / "foundation" / "shared" / "health.py"
        health.write_text(health.read_text().replace('{"status": "ok"}', '{"status": "ok", "v": "2"}', 1))
        out.wait_for("history-service reloaded", after=mark)
        assert httpx.get(instance.url + "/health").json() == {"status": "ok", "v": "2"}

        mark = out.count()
        version = next((copy / "foundation" / "history_service" / "migrations" / "versions").glob("0*.py"))
        version.write_text(version.read_text() + "\n")
        out.wait_for("migrations of history-service changed: applying them", after=mark)
        out.wait_for("history-service reloaded", after=mark)

        mark = out.count()
        (copy / "foundation" / "devstack" / "runner.py").write_text("# edited\n")
        out.wait_for("the stack runner changed", after=mark)

        process = stack.processes[instance]
        process.signal_group(signal.SIGKILL)
        out.wait_for("history-service exited with code", after=mark)
    finally:
        stack.request_stop(signal.SIGTERM)
        thread.join(30)
    assert result == [0]
    assert not (stack_options.data_dir / STATE_FILE).exists()
    assert out.getvalue().splitlines()[-1].endswith("stopped")


def test_a_second_stack_on_the_same_data_folder_is_refused(stack_options: StackOptions) -> None:
    stack_options.data_dir.mkdir(parents=True)
    with open(stack_options.data_dir / "runner.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        out = Output()
        assert Stack(stack_options, out).run() == 1
    assert "another stack is running on" in out.getvalue()


def test_a_busy_port_is_named_before_anything_starts(stack_options: StackOptions) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        options = replace(stack_options, ports={**stack_options.ports, "history-service": port})
        out = Output()
        assert Stack(options, out).run() == 1
    assert f"ports in use: {port} (history-service, HISTORY_PORT)" in out.getvalue()


def test_reset_empties_the_data_folder(stack_options: StackOptions) -> None:
    stale = stack_options.data_dir / "redis" / "dump.rdb"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    (stack_options.data_dir / "old.txt").write_text("old")
    out = Output()
    stack = Stack(replace(stack_options, reset=True), out)
    stack.stopping = True  # stop right after the infrastructure is up
    assert stack.run() == 0
    assert not stale.exists()
    assert not (stack_options.data_dir / "old.txt").exists()
    assert (stack_options.data_dir / "keys").is_dir()
    assert "reset: emptied" in out.getvalue()


def test_an_embedded_server_that_dies_stops_the_stack_and_says_why(stack_options: StackOptions) -> None:
    out = Output()
    stack = Stack(replace(stack_options, redis_url=None), out)  # Redis embedded, PostgreSQL not
    thread, result = run_in_thread(stack)
    try:
        out.wait_for(READY_LINE)
        services = list(stack.processes.values())
        assert stack.infra is not None and stack.infra.redis is not None
        redis = stack.infra.redis.proc
        assert redis is not None
        redis.kill()
        line = out.wait_for("the embedded redis server exited", timeout=30)
        thread.join(30)
    finally:
        stack.request_stop(signal.SIGTERM)
        thread.join(30)
    assert "with code -9" in line
    assert result == [1]
    assert services and not any(p.running() for p in services)
    assert out.getvalue().splitlines()[-1].endswith("stopped")


def test_gateway_alone_is_ready_and_says_the_others_are_not_running_here(stack_options: StackOptions) -> None:
    out = Output()
    stack = Stack(replace(stack_options, services=(GATEWAY,)), out)
    thread, result = run_in_thread(stack)
    try:
        ready = out.wait_for(READY_LINE)
    finally:
        stack.request_stop(signal.SIGTERM)
        thread.join(30)
    assert "gateway reports degraded" in ready
    assert result == [0]
