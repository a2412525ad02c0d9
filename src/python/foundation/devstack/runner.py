"""The one-command local stack: ``python -m foundation.devstack`` / ``./pants run //:dev``.

Starts PostgreSQL, Redis and a mail catcher (embedded, or the servers DATABASE_URL, REDIS_URL
and SMTP_URL name), creates and migrates one database per service, runs every service as a
child process, merges their logs, reloads services whose sources change, and on
Ctrl-C/SIGTERM stops everything it started. See docs/development.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import shutil
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO

from foundation.devstack.envfile import load_env_file
from foundation.devstack.infrastructure import Infrastructure, database_name, start_infrastructure
from foundation.devstack.logs import LogSink, table
from foundation.devstack.options import StackOptions, parse_options
from foundation.devstack.paths import repo_root
from foundation.devstack.plan import base_env, child_pythonpath, instance_env, plan_instances
from foundation.devstack.processes import ManagedProcess, stop_all
from foundation.devstack.reload import SourceWatcher, affected_packages, changed_package, touches_migrations
from foundation.devstack.services import GATEWAY, SERVICES, Instance, Service

READY_LINE = "stack ready"
STATE_FILE = "stack.json"
STOP_TIMEOUT = 5.0  # seconds a service gets to shut down gracefully before SIGKILL
RELOAD_STOP_TIMEOUT = 2.0  # a reload does not wait for a slow drain


class StackError(Exception):
    """A reason the stack cannot start, worded for the person who ran it."""


class _Stopped(Exception):
    pass


class _ServerLost(Exception):
    """An embedded server the services depend on stopped while the stack ran."""


def probe(url: str, timeout: float = 0.5) -> tuple[int, dict[str, object]] | None:
    """Status and JSON body of ``GET url/health``; None when nothing answers HTTP."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:  # noqa: S310 - loopback
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:  # 503 "degraded" is an answer too
        status, raw = error.code, error.read()
    except (OSError, ValueError):
        return None
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {}
    return status, body if isinstance(body, dict) else {}


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class Stack:
    def __init__(self, options: StackOptions, out: IO[str] | None = None) -> None:
        self.options = options
        self.log = LogSink(out or sys.stdout, color=options.color)
        self.events: queue.Queue[set[Path]] = queue.Queue()
        self.stopping = False
        self.infra: Infrastructure | None = None
        self.instances: list[Instance] = []
        self.processes: dict[Instance, ManagedProcess] = {}
        self.pending: dict[Instance, tuple[float, str]] = {}  # not yet healthy: since, reason
        self.ready = False
        self.watcher: SourceWatcher | None = None
        self._lock: IO[str] | None = None
        self._common: dict[str, str] = {}
        self._stop_signal: int | None = None
        self.log.widen([i.tag for i in plan_instances(options, lambda: 0)] + ["migrate"])

    # -- lifecycle -------------------------------------------------------------------------

    def request_stop(self, signum: int, _: FrameType | None = None) -> None:
        """The signal handler: only sets a flag (taking a lock here could deadlock the
        main thread it interrupts); the main loop notices within 0.2 s."""
        if not self.stopping:
            self._stop_signal = signum
        self.stopping = True

    def _check_stop(self) -> None:
        if self.stopping:
            raise _Stopped

    def run(self) -> int:
        started = time.monotonic()
        try:
            self._prepare_data_dir()
            self._start_infrastructure()
            self._migrate()
            self._start_services()
            self._print_table()
            self._write_state()
            if self.options.reload:
                self.watcher = SourceWatcher(self.options.source_dir, self.events)
                self.watcher.start()
                self.log.say(f"reloading on changes under {self.options.source_dir}")
            self._loop(started)
            return 0
        except _Stopped:
            return 0
        except _ServerLost as exc:
            self.log.say(str(exc))
            return 1
        except StackError as exc:
            self.log.say(f"cannot start: {exc}")
            return 1
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        if self._stop_signal is not None:
            self.log.say(f"{signal.Signals(self._stop_signal).name}: stopping every process")
        if self.watcher:
            self.watcher.stop()
            self.watcher = None
        if self.processes:
            stop_all(self.processes.values(), STOP_TIMEOUT)
            self.processes.clear()
        if self.infra:
            self.infra.stop()
            self.infra = None
        (self.options.data_dir / STATE_FILE).unlink(missing_ok=True)
        if self._lock:
            self._lock.close()
            self._lock = None
            self.log.say("stopped")

    # -- start-up steps --------------------------------------------------------------------

    def _prepare_data_dir(self) -> None:
        data = self.options.data_dir
        data.mkdir(parents=True, exist_ok=True)
        lock = open(data / "runner.lock", "a+")  # noqa: SIM115 - held for the stack's lifetime
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StackError(
                f"another stack is running on {data}; stop it, or pass another --data-dir"
            ) from None
        self._lock = lock
        if self.options.reset:
            for child in data.iterdir():
                if child.name != "runner.lock":
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            self.log.say(f"reset: emptied {data}")
        keys = data / "keys"
        keys.mkdir(exist_ok=True)
        keys.chmod(0o700)

    def _start_infrastructure(self) -> None:
        since = time.monotonic()
        try:
            self.infra = start_infrastructure(
                self.options.data_dir,
                database_url=self.options.database_url,
                redis_url=self.options.redis_url,
                postgres_port=self.options.postgres_port,
                redis_port=self.options.redis_port,
                smtp_url=self.options.smtp_url,
                smtp_port=self.options.smtp_port,
            )
        except (RuntimeError, TimeoutError, OSError) as exc:
            raise StackError(str(exc)) from exc
        self._check_stop()
        try:
            self.infra.create_databases(self.options.services)
        except Exception as exc:
            raise StackError(f"cannot create the service databases: {exc}") from exc
        if self.infra.created:
            self.log.say(f"created databases {', '.join(self.infra.created)}")
        self.log.say(f"postgres and redis up ({time.monotonic() - since:.1f} s)")
        self._common = base_env(self.options, os.environ, child_pythonpath(self.options.source_dir))

    def _run_migrations(self, services: Sequence[Service]) -> bool:
        assert self.infra is not None
        pairs = [f"{s.migrations}={self.infra.database_url(s)}" for s in services if s.has_database]
        if not pairs:
            return True
        process = ManagedProcess(
            "migrate",
            [sys.executable, "-m", "foundation.devstack.migrate", *pairs],
            self._common,
            self.log.line,
        )
        process.start()
        while process.running():
            if self.stopping:
                stop_all([process])
                raise _Stopped
            time.sleep(0.05)
        process.finish()
        return process.exit_code() == 0

    def _migrate(self) -> None:
        since = time.monotonic()
        if not self._run_migrations(self.options.services):
            raise StackError("migrations failed (see the lines tagged 'migrate' above)")
        self.log.say(f"migrations applied ({time.monotonic() - since:.1f} s)")
        self._check_stop()

    def _start_services(self) -> None:
        self.instances = plan_instances(self.options)
        running = [i for i in self.instances if i.service in self.options.services]
        busy = [i for i in running if port_in_use(i.port)]
        if busy:
            names = ", ".join(f"{i.port} ({i.name}, {i.service.port_env})" for i in busy)
            raise StackError(
                f"ports in use: {names}; stop what uses them, choose other ports, or pass --free-ports"
            )
        for instance in running:
            self._start(instance, "started")

    def _start(self, instance: Instance, reason: str) -> None:
        assert self.infra is not None
        service = instance.service
        env = instance_env(
            instance,
            self.instances,
            common=self._common,
            database_url=self.infra.database_url(service) if service.has_database else None,
            redis_url=self.infra.redis_url,
            data_dir=self.options.data_dir,
            smtp_url=self.infra.smtp_url,
        )
        argv = [
            sys.executable,
            "-m",
            service.module,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(instance.port),
        ]
        process = ManagedProcess(instance.tag, argv, env, self.log.line)
        process.start()
        self.processes[instance] = process
        self.pending[instance] = (time.monotonic(), reason)

    def _print_table(self) -> None:
        assert self.infra is not None
        rows = []
        for instance, process in self.processes.items():
            db = database_name(self.infra.base, instance.service) if instance.service.has_database else "-"
            rows.append((instance.name, instance.url, f"pid {process.pid}, database {db}"))
        rows += self.infra.describe(self.options.data_dir)
        for line in table(rows, ("what", "where", "notes")):
            self.log.say(line)

    def _write_state(self) -> None:
        assert self.infra is not None
        state = {
            "pid": os.getpid(),
            "services": {i.name: i.url for i in self.processes},
            "databases": {
                s.package: self.infra.database_url(s) for s in self.options.services if s.has_database
            },
            "redis_url": self.infra.redis_url,
            "mail_dir": str(self.infra.mail.folder) if self.infra.mail and self.infra.mail.folder else None,
        }
        path = self.options.data_dir / STATE_FILE
        path.write_text(json.dumps(state, indent=2))
        path.chmod(0o600)

    # -- running ---------------------------------------------------------------------------

    def _loop(self, started: float) -> None:
        warned = False
        while not self.stopping:
            try:
                event = self.events.get(timeout=0.2)
            except queue.Empty:
                event = None
            if self.stopping:
                break
            if event:
                self._reload(event)
            self._check_health(started)
            self._report_exits()
            self._check_servers()
            if not self.ready and not warned and time.monotonic() - started > self.options.ready_timeout:
                waiting = ", ".join(i.name for i in self.pending) or GATEWAY.name
                self.log.say(
                    f"not ready after {self.options.ready_timeout:.0f} s; still waiting on {waiting}"
                )
                warned = True

    def _check_health(self, started: float) -> None:
        for instance in list(self.pending):
            if not self.processes[instance].running() or probe(instance.url) is None:
                continue
            since, reason = self.pending.pop(instance)
            if reason != "started":
                self.log.say(f"{instance.name} {reason} ({time.monotonic() - since:.1f} s)")
        if self.ready or self.pending:
            return
        gateways = [i for i in self.processes if i.service == GATEWAY]
        note = ""
        if gateways:
            answer = probe(gateways[0].url)
            status = answer[1].get("status") if answer else None
            if len(self.options.services) == len(SERVICES) and status != "ok":
                return  # the whole stack runs: wait until the gateway sees every service
            if status != "ok":
                down = answer[1].get("down") if answer else "?"
                note = f" (gateway reports {status}: {down} not running here)"
        entry = gateways[0].url if gateways else ", ".join(i.url for i in self.processes)
        self.ready = True
        self.log.say(
            f"{READY_LINE} in {time.monotonic() - started:.1f} s: {entry}{note}  (Ctrl-C stops everything)"
        )

    def _report_exits(self) -> None:
        for instance, process in self.processes.items():
            code = process.exit_code()
            if code is None or process.expected_exit:
                continue
            process.expected_exit = True
            hint = "it restarts when its code changes" if self.options.reload else "restart the stack"
            self.log.say(f"{instance.name} exited with code {code}; {hint}")

    def _check_servers(self) -> None:
        """Stop the stack when an embedded PostgreSQL or Redis has gone: every service would
        otherwise keep logging connection errors that do not say why."""
        for name, code in self.infra.exited() if self.infra else ():
            raise _ServerLost(
                f"the embedded {name} server exited with code {code}; the services cannot work "
                "without it, so the stack stops (start it again; its data is kept)"
            )

    def _reload(self, paths: set[Path]) -> None:
        running = {i.service for i in self.processes}
        packages = affected_packages(self.options.source_dir, [s.package for s in running], paths)
        if any(changed_package(self.options.source_dir, p) == "devstack" for p in paths):
            self.log.say("the stack runner changed: restart it to apply")
        if not packages:
            return
        names = ", ".join(sorted(p.name for p in paths))
        restart = sorted((s for s in running if s.package in packages), key=lambda s: s.name)
        for service in restart:
            if touches_migrations(self.options.source_dir, service.package, paths):
                self.log.say(f"migrations of {service.name} changed: applying them")
                self._run_migrations([service])
        self.log.say(f"{names} changed: restarting {', '.join(s.name for s in restart)}")
        group = [i for i in self.processes if i.service in restart]
        stop_all([self.processes[i] for i in group], RELOAD_STOP_TIMEOUT)  # all at once
        for instance in group:
            self._start(instance, "reloaded")


def main(argv: Sequence[str] | None = None) -> None:
    env_file = Path(os.environ.get("DEVSTACK_ENV_FILE") or (repo_root() or Path.cwd()) / ".env")
    loaded = load_env_file(env_file, os.environ)
    options = parse_options(argv)
    stack = Stack(options)
    if loaded:
        stack.log.say(f"read {', '.join(loaded)} from {env_file}")
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stack.request_stop)
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(stack.run())
