"""PostgreSQL, Redis and a mail server for the stack: embedded servers, or the ones
DATABASE_URL/REDIS_URL/SMTP_URL name.

Without SMTP_URL the stack runs a mail catcher (``mail_catcher.py``): auth-service's mail
lands in ``<data dir>/mail`` as ``.eml`` files, which the dev inbox shows (``inbox.py``).

Each service with a database gets its own, created when missing on that one server:
``<base>_auth``, ``<base>_history``, ``<base>_stats``. ``<base>`` is the database named in
``DATABASE_URL`` (``foundation`` when it names none or ``postgres``), so
``DATABASE_URL=postgresql://me@127.0.0.1:5432/shop`` gives ``shop_auth``, ``shop_history``, ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.engine import make_url

from foundation.database.provisioning import ensure_database, with_database
from foundation.devstack.embedded import EmbeddedPostgres, EmbeddedRedis
from foundation.devstack.mail_catcher import MailCatcher
from foundation.devstack.services import Service

DEFAULT_BASE = "foundation"
INBOX_URL = "http://127.0.0.1:8800/inbox/"


def database_base(url: str) -> str:
    name = make_url(url.replace("postgres://", "postgresql://", 1)).database
    return DEFAULT_BASE if not name or name in {"postgres", "template1"} else name


def database_name(base: str, service: Service) -> str:
    return f"{base}_{service.short}"


def redacted(url: str) -> str:
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername.startswith("postgresql"):
        parsed = parsed.set(drivername="postgresql")
    return parsed.render_as_string(hide_password=True)


def redacted_smtp(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    return url


@dataclass
class Infrastructure:
    server_url: str
    redis_url: str
    base: str
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    smtp_url: str = ""
    mail: MailCatcher | None = None
    created: list[str] = field(default_factory=list)

    def database_url(self, service: Service) -> str:
        return with_database(self.server_url, database_name(self.base, service))

    def create_databases(self, services: tuple[Service, ...]) -> None:
        for service in services:
            if service.has_database and ensure_database(self.database_url(service)):
                self.created.append(database_name(self.base, service))

    def describe(self, data_dir: Path) -> list[tuple[str, str, str]]:
        pg_note = f"embedded, data in {data_dir / 'postgres'}" if self.postgres else "DATABASE_URL"
        redis_note = f"embedded, data in {data_dir / 'redis'}" if self.redis else "REDIS_URL"
        rows = [
            ("postgres", redacted(self.server_url), pg_note),
            ("redis", redacted(self.redis_url), redis_note),
        ]
        if self.mail is not None:
            inbox = f"{INBOX_URL} (./pants run //:studio)"
            rows.append(("mail", self.mail.url, f"catcher, messages in {self.mail.folder}; inbox {inbox}"))
        elif self.smtp_url:
            rows.append(("mail", redacted_smtp(self.smtp_url), "SMTP_URL"))
        return rows

    def exited(self) -> list[tuple[str, int]]:
        """The embedded servers that have stopped on their own: (name, exit code)."""
        gone: list[tuple[str, int]] = []
        for name, server in (("postgres", self.postgres), ("redis", self.redis)):
            code = server.proc.poll() if server and server.proc else None
            if code is not None:
                gone.append((name, code))
        return gone

    def stop(self) -> None:
        if self.mail:
            self.mail.stop()
        if self.redis:
            self.redis.stop()
        if self.postgres:
            self.postgres.stop()


def start_infrastructure(
    data_dir: Path,
    *,
    database_url: str | None,
    redis_url: str | None,
    postgres_port: int = 0,
    redis_port: int = 0,
    smtp_url: str | None = None,
    smtp_port: int = 0,
) -> Infrastructure:
    postgres = redis = mail = None
    try:
        if not database_url:
            postgres = EmbeddedPostgres(data_dir / "postgres", port=postgres_port).start()
        if not redis_url:
            redis = EmbeddedRedis(data_dir / "redis", port=redis_port, persist=True).start()
        if not smtp_url:
            mail = MailCatcher(data_dir / "mail", port=smtp_port).start()
    except BaseException:
        if redis:
            redis.stop()
        if postgres:
            postgres.stop()
        raise
    server_url = database_url or (postgres.url if postgres else "")
    return Infrastructure(
        server_url=server_url,
        redis_url=redis_url or (redis.url if redis else ""),
        base=database_base(server_url),
        postgres=postgres,
        redis=redis,
        smtp_url=smtp_url or (mail.url if mail else ""),
        mail=mail,
    )
