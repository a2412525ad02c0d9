"""`auth_service` command line: serve (default), migrate, rotate-keys, grant-admin,
reencrypt-oauth-tokens."""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta

from foundation.auth.encryption import token_cipher
from foundation.auth.signing import KeyDirectory
from foundation.auth_service import migrations
from foundation.auth_service.repository import users
from foundation.auth_service.services.oauth import reencrypt_stored_tokens
from foundation.auth_service.services.passwords import share_hashing_slots
from foundation.auth_service.services.sessions import purge_ended_sessions
from foundation.auth_service.settings import AuthServiceSettings
from foundation.database.commands import add_migrate_command, require_database_url
from foundation.database.direct import DirectSql
from foundation.database.engine import create_engine, session_factory
from foundation.shared.server import Cli

cli = Cli(
    name="auth_service",
    app_factory="foundation.auth_service.app:create_app",
    default_port=8001,
    # The workers share one hashing slot per core (see services/passwords.py).
    before_serve=share_hashing_slots,
)

add_migrate_command(cli, AuthServiceSettings, migrations)


def _rotate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--activate-in",
        type=int,
        default=None,
        help="seconds until the new key signs (default JWT_KEY_ACTIVATION_DELAY): verifiers learn it first",
    )
    parser.add_argument("--algorithm", choices=["EdDSA", "ES256"], default="EdDSA")


@cli.command(
    "rotate-keys", "add a new signing key; delete keys whose tokens have all expired", _rotate_arguments
)
def rotate_keys(args: argparse.Namespace) -> int:
    settings = AuthServiceSettings()
    if settings.signing_keys_value():
        print(
            "Signing keys come from JWT_SIGNING_KEYS. To rotate: put the new key first, keep the "
            f"old one listed for at least {settings.access_token_ttl} s (the access-token lifetime), "
            "then remove it."
        )
        return 2
    delay = settings.jwt_key_activation_delay if args.activate_in is None else args.activate_in
    new, removed = KeyDirectory(settings.jwt_keys_dir).rotate(
        now=time.time(),
        activation_delay=delay,
        token_lifetime=settings.access_token_ttl,
        algorithm=args.algorithm,
    )
    print(f"new signing key {new.kid} ({new.algorithm}) signs in {delay} s; published now")
    for key in removed:
        print(f"removed key {key.kid}: every token it signed has expired")
    return 0


async def _grant(settings: AuthServiceSettings, email: str, role: str) -> bool:
    engine = create_engine(settings)
    try:
        async with session_factory(engine)() as db:
            user = await users.add_role(db, email, role)
            await db.commit()
            return user is not None
    finally:
        await engine.dispose()


def _email_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("email")


@cli.command("grant-admin", "give a user the admin role (in tokens from their next refresh)", _email_argument)
def grant_admin(args: argparse.Namespace) -> int:
    settings = AuthServiceSettings()
    require_database_url(settings)
    if not asyncio.run(_grant(settings, args.email, "admin")):
        print(f"no user with email {args.email}")
        return 1
    print(f"{args.email} is an admin")
    return 0


async def _purge(settings: AuthServiceSettings) -> int:
    direct = DirectSql(settings)
    await direct.open()
    try:
        return await purge_ended_sessions(
            direct,
            absolute=timedelta(seconds=settings.session_absolute_lifetime),
            retention=timedelta(seconds=settings.session_retention),
            now=datetime.now(UTC),
        )
    finally:
        await direct.close()


@cli.command(
    "purge-sessions",
    "delete the rows of sessions that ended more than SESSION_RETENTION seconds ago (each "
    "replica also does it every SESSION_PURGE_INTERVAL seconds)",
)
def purge_sessions(args: argparse.Namespace) -> int:
    settings = AuthServiceSettings()
    require_database_url(settings)
    print(f"deleted {asyncio.run(_purge(settings))} row(s) of ended sessions")
    return 0


async def _reencrypt(settings: AuthServiceSettings) -> int:
    keys = settings.oauth_token_encryption_keys
    cipher = token_cipher(
        keys.get_secret_value() if keys else None,
        production=settings.is_production,
        data_dir=settings.oauth_data_dir,
    )
    engine = create_engine(settings)
    try:
        async with session_factory(engine)() as db:
            return await reencrypt_stored_tokens(db, cipher)
    finally:
        await engine.dispose()


@cli.command(
    "reencrypt-oauth-tokens",
    "seal every stored Google/Apple token with the newest OAUTH_TOKEN_ENCRYPTION_KEYS key",
)
def reencrypt_oauth_tokens(args: argparse.Namespace) -> int:
    settings = AuthServiceSettings()
    require_database_url(settings)
    moved = asyncio.run(_reencrypt(settings))
    print(f"re-encrypted {moved} stored provider token(s) under the newest key")
    return 0


def main() -> None:
    raise SystemExit(cli.main())


if __name__ == "__main__":
    main()
