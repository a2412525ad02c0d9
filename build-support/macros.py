# BUILD-file macros, loaded before every BUILD file ([GLOBAL].build_file_prelude_globs in
# pants.toml). Pants runs this file itself: target types are in scope, imports are not.


def service_pex(name, dependencies=(), migrations=True):
    """A service's one PEX (`main.py:main`): serves, migrates and runs its admin commands.

    `execution_mode="venv"` gives Granian's worker processes and Alembic's file-based scripts
    a normal site-packages. `dependencies` adds what the service loads by name besides its
    app factory; `migrations=False` for a service without a database (the gateway).
    """
    pex_binary(  # noqa: F821 - a Pants target type
        name=name,
        entry_point="main.py:main",
        execution_mode="venv",
        # Loaded by name at run time, so inference cannot see them: Granian's app factory,
        # uvloop (Loops.auto picks it up) and Alembic's revision scripts.
        dependencies=[
            "./app.py:lib",
            "3rdparty/python:reqs#uvloop",
            *(["./migrations"] if migrations else []),
            *dependencies,
        ],
        restartable=True,
    )


def service_migrations():
    """A service's `migrations/` package: its `metadata` and the revisions in `versions/`,
    which Alembic loads by path, so whoever depends on the package (the PEX, tests) gets them.
    The environment and template come with foundation.database.migrations."""
    python_sources(  # noqa: F821 - a Pants target type
        overrides={"__init__.py": {"dependencies": ["./versions"]}},
    )
