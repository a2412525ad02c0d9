"""Database roles for one service, run as the RDS master user before the migrations.

Idempotent; safe to run on every release and after every credential rotation. It makes:

  <db>_migrator   LOGIN, owns the schema `public` and everything in it (the migrations connect
                  as it, so they own what they create)
  <db>_app        NOLOGIN: USAGE on the schema and SELECT/INSERT/UPDATE/DELETE on its tables,
                  USAGE/SELECT/UPDATE on its sequences, now and for whatever the migrator creates
                  later (default privileges). No CREATE anywhere: the services cannot change the
                  schema.
  <db>_app_a, <db>_app_b   LOGIN, members of <db>_app: the runtime credential alternates between
                  them, so a rotation re-passwords the user no pod uses (docs/deployment.md).

Input (environment; the Secret <service>-db-bootstrap made by External Secrets):
  PGHOST PGPORT PGDATABASE PGUSER PGPASSWORD   the master login (libpq variables), with
  PGSSLMODE=verify-full and PGSSLROOTCERT      the RDS CA bundle
  DB_NAME                                       the database's short name (auth, history, stats)
  MIGRATOR_PASSWORD                             from the db-migrator secret
  APP_A_PASSWORD, APP_B_PASSWORD                from the db-app-a and db-app-b secrets

Every run sets all three passwords: a rotation changes the secret of the login no pod uses, runs
this Job, and only then points db-app at that login (docs/deployment.md).

Run with the service image's own interpreter (psycopg is in it):
  /opt/app/bin/python /opt/db-bootstrap/bootstrap.py
"""

from __future__ import annotations

import os
import re
import sys

import psycopg
from psycopg import sql

NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


def bootstrap(conn: psycopg.Connection, db: str, logins: dict[str, str]) -> None:
    """Create or update the roles and grants for database `db`; `logins` maps a login role
    (<db>_migrator, <db>_app_a, <db>_app_b) to its password (a missing one keeps its password)."""
    migrator, app = sql.Identifier(f"{db}_migrator"), sql.Identifier(f"{db}_app")
    members = [f"{db}_app_a", f"{db}_app_b"]
    unknown = set(logins) - {f"{db}_migrator", *members}
    if unknown:
        raise SystemExit(f"db-bootstrap: not a login of database {db}: {sorted(unknown)}")

    def ensure_role(name: str, login: bool) -> None:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone() is None:
            conn.execute(
                sql.SQL("CREATE ROLE {} " + ("LOGIN" if login else "NOLOGIN")).format(sql.Identifier(name))
            )

    with conn.transaction():
        ensure_role(f"{db}_app", login=False)
        for name in [f"{db}_migrator", *members]:
            ensure_role(name, login=True)
            password = logins.get(name)
            if password:
                conn.execute(
                    sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(name), sql.Literal(password)
                    )
                )
        for member in members:
            conn.execute(sql.SQL("GRANT {} TO {}").format(app, sql.Identifier(member)))
        # The master user (not a superuser on RDS) must be a member to hand objects over.
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(migrator))

        database = sql.Identifier(conn.info.dbname)
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(database))
        conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(database, app))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, migrator))
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(migrator))
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(app))

        # Objects made before this scheme (by the master user) pass to the migrator.
        owned = conn.execute(
            """
            SELECT format('ALTER TABLE %%I.%%I OWNER TO %%I', n.nspname, c.relname, %s::text)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
              AND pg_get_userbyid(c.relowner) = current_user
            UNION ALL
            SELECT format('ALTER TYPE %%I.%%I OWNER TO %%I', n.nspname, t.typname, %s::text)
            FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd')
              AND pg_get_userbyid(t.typowner) = current_user
            """,
            [f"{db}_migrator", f"{db}_migrator"],
        ).fetchall()
        for (statement,) in owned:
            conn.execute(statement)

        tables = "SELECT, INSERT, UPDATE, DELETE"
        sequences = "USAGE, SELECT, UPDATE"
        conn.execute(sql.SQL(f"GRANT {tables} ON ALL TABLES IN SCHEMA public TO {{}}").format(app))
        conn.execute(sql.SQL(f"GRANT {sequences} ON ALL SEQUENCES IN SCHEMA public TO {{}}").format(app))
        for kind, privileges in (("TABLES", tables), ("SEQUENCES", sequences)):
            conn.execute(
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
                    f"GRANT {privileges} ON {kind} TO {{}}"
                ).format(migrator, app)
            )


def main() -> int:
    db = os.environ.get("DB_NAME", "")
    if not NAME.match(db):
        print(f"db-bootstrap: DB_NAME {db!r} is not a plain lower-case name", file=sys.stderr)
        return 2
    logins = {
        f"{db}_migrator": os.environ.get("MIGRATOR_PASSWORD", ""),
        f"{db}_app_a": os.environ.get("APP_A_PASSWORD", ""),
        f"{db}_app_b": os.environ.get("APP_B_PASSWORD", ""),
    }
    missing = [name for name, password in logins.items() if not password]
    if missing:
        print(f"db-bootstrap: no password given for {', '.join(missing)}", file=sys.stderr)
        return 2
    with psycopg.connect("", autocommit=True) as conn:  # libpq's PG* variables
        bootstrap(conn, db, logins)
    print(f"db-bootstrap: roles of database {db} in place, passwords of {', '.join(sorted(logins))} set")
    return 0


if __name__ == "__main__":
    sys.exit(main())
