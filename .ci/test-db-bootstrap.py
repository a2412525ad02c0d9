"""The db-bootstrap roles against a real PostgreSQL (infrastructure/kubernetes/base/db_bootstrap).

Plays RDS: a non-superuser "master" (CREATEROLE, CREATEDB) owns a fresh database and a table
made before the scheme; bootstrap.py runs as it; then:
  - the migrator owns the schema and can create tables; the runtime users (a and b) can read and
    write every table, the new one included (default privileges), and cannot create anything;
  - a re-run after a rotation sets the inactive user's password and keeps the active one's;
  - PUBLIC cannot connect to the database.
Usage: python .ci/test-db-bootstrap.py ADMIN_URL   (a superuser's libpq URL, e.g.
postgresql://postgres@127.0.0.1:5432/postgres). Prints 'N passed, N failed'; needs psycopg.
"""

# ruff: noqa: S608  (table and role names here are generated or fixed, never input)
from __future__ import annotations

import importlib.util
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location(
    "bootstrap", HERE.parent / "infrastructure/kubernetes/base/db_bootstrap/bootstrap.py"
)
assert spec and spec.loader
bootstrap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bootstrap)


def main(admin_url: str) -> int:
    suffix = secrets.token_hex(4)
    db, master = f"bt{suffix}", f"master_{suffix}"
    pw = {name: secrets.token_urlsafe(16) for name in ("master", "migrator", "a", "b", "a2")}
    admin = psycopg.connect(admin_url, autocommit=True)
    base = conninfo_to_dict(admin_url)

    def url(user: str, password: str, dbname: str = db) -> str:
        return make_conninfo("", **{**base, "user": user, "password": password, "dbname": dbname})

    results: list[tuple[str, bool, str]] = []

    def case(name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
            results.append((name, True, ""))
        except Exception as exc:  # noqa: BLE001 - a test runner reports every failure
            results.append((name, False, f"{type(exc).__name__}: {exc}"))

    def refused(fn: Callable[[], object]) -> None:
        try:
            fn()
        except psycopg.Error:
            return
        raise AssertionError("was allowed")

    try:
        admin.execute(f"CREATE ROLE {master} LOGIN CREATEROLE CREATEDB PASSWORD '{pw['master']}'")
        admin.execute(f"CREATE DATABASE {db} OWNER {master}")
        with psycopg.connect(url(master, pw["master"]), autocommit=True) as m:
            m.execute("CREATE TABLE public.before_scheme (id serial PRIMARY KEY, v text)")
            bootstrap.bootstrap(m, db, {f"{db}_migrator": pw["migrator"], f"{db}_app_a": pw["a"]})

        def migrator_owns_and_creates() -> None:
            with psycopg.connect(url(f"{db}_migrator", pw["migrator"]), autocommit=True) as c:
                owner = c.execute("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname='public'")
                assert owner.fetchone() == (f"{db}_migrator",)
                table_owner = c.execute("SELECT tableowner FROM pg_tables WHERE tablename='before_scheme'")
                assert table_owner.fetchone() == (f"{db}_migrator",)
                c.execute("CREATE TABLE public.after_scheme (id bigserial PRIMARY KEY, v text)")

        def app_has_dml_only() -> None:
            with psycopg.connect(url(f"{db}_app_a", pw["a"]), autocommit=True) as c:
                for table in ("before_scheme", "after_scheme"):
                    c.execute(f"INSERT INTO {table} (v) VALUES ('x')")
                    c.execute(f"UPDATE {table} SET v = 'y'")
                    assert c.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)
                    c.execute(f"DELETE FROM {table}")
                refused(lambda: c.execute("CREATE TABLE public.nope (id int)"))
                refused(lambda: c.execute("ALTER TABLE before_scheme ADD COLUMN w int"))
                refused(lambda: c.execute("DROP TABLE after_scheme"))

        def rotation_keeps_the_active_user() -> None:
            with psycopg.connect(url(master, pw["master"]), autocommit=True) as m:
                # db-app now AWSCURRENT = b (new password), AWSPREVIOUS = a (unchanged).
                bootstrap.bootstrap(m, db, {f"{db}_migrator": pw["migrator"], f"{db}_app_b": pw["b"]})
            with psycopg.connect(url(f"{db}_app_a", pw["a"])):
                pass
            with psycopg.connect(url(f"{db}_app_b", pw["b"]), autocommit=True) as c:
                c.execute("INSERT INTO after_scheme (v) VALUES ('b')")
                refused(lambda: c.execute("CREATE TABLE public.nope (id int)"))

        def public_cannot_connect() -> None:
            other = f"other_{suffix}"
            admin.execute(f"CREATE ROLE {other} LOGIN PASSWORD 'x{suffix}'")
            try:
                refused(lambda: psycopg.connect(url(other, f"x{suffix}")).close())
            finally:
                admin.execute(f"DROP ROLE {other}")

        case("migrator owns the schema and creates tables", migrator_owns_and_creates)
        case("runtime user: DML on every table, no DDL", app_has_dml_only)
        case(
            "rotation: the other user gets a new password, the active one keeps working",
            rotation_keeps_the_active_user,
        )
        case("PUBLIC cannot connect", public_cannot_connect)
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        for role in (f"{db}_app_a", f"{db}_app_b", f"{db}_app", f"{db}_migrator", master):
            admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()

    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'}  {name}{'' if ok else ': ' + detail}")
    failed = sum(1 for _, ok, _ in results if not ok)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
