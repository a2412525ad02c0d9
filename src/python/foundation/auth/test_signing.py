from __future__ import annotations

import base64
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from foundation.auth.keys import StaticKeySource
from foundation.auth.signing import (
    AccessTokenIssuer,
    KeyDirectory,
    KeyRing,
    LocalKeySource,
    SigningKey,
    SigningKeyStore,
    generate_key,
    keys_from_config,
)
from foundation.auth.verifier import TokenVerifier
from foundation.shared.errors import Unauthorized

ISSUER, AUDIENCE = "https://auth.test", "test-api"
LIFETIME = 900


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def issuer_for(store: SigningKeyStore, clock: Clock | None = None) -> AccessTokenIssuer:
    return AccessTokenIssuer(
        store, issuer=ISSUER, audience=AUDIENCE, lifetime=LIFETIME, clock=clock or Clock()
    )


def verifier_for(jwks: dict[str, object]) -> TokenVerifier:
    return TokenVerifier(StaticKeySource(jwks), issuer=ISSUER, audience=AUDIENCE)


def test_kid_is_the_rfc7638_thumbprint() -> None:
    # RFC 8037 appendix A: an Ed25519 key and its JWK thumbprint.
    private = ed25519.Ed25519PrivateKey.from_private_bytes(
        b64decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
    )
    key = SigningKey(private)
    assert key.public_jwk["x"] == "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    assert key.kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    assert key.algorithm == "EdDSA"
    assert "d" not in key.public_jwk


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
async def test_issued_token_has_the_contract_shape_and_verifies(algorithm: str) -> None:
    clock = Clock()
    key = generate_key(algorithm=algorithm)
    store = SigningKeyStore(KeyRing([key], LIFETIME))
    user, session = uuid.uuid4(), uuid.uuid4()
    issued = issuer_for(store, clock).issue(user, session, roles={"admin"})
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": algorithm, "kid": key.kid, "typ": "at+jwt"}
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE
    assert claims["sub"] == str(user)
    assert claims["sid"] == str(session)
    assert claims["roles"] == ["admin"]
    assert claims["exp"] - claims["iat"] == LIFETIME == issued.expires_in
    assert claims["jti"] == issued.token_id
    # A verifier with the real clock: issue one "now" and check it end to end.
    live = AccessTokenIssuer(store, issuer=ISSUER, audience=AUDIENCE).issue(user, session, ["admin"])
    principal = await verifier_for(store.jwks()).verify(live.token)
    assert principal.user_id == user
    assert principal.session_id == session
    assert principal.roles == frozenset({"admin"})


async def test_local_key_source_serves_published_keys_and_refuses_unknown() -> None:
    store = SigningKeyStore(KeyRing([generate_key()], LIFETIME))
    source = LocalKeySource(store)
    kid = store.signing_key().kid
    assert (await source.key_for(kid)).key_id == kid
    with pytest.raises(KeyError):
        await source.key_for("nope")
    verifier = TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE)
    token = AccessTokenIssuer(store, issuer=ISSUER, audience=AUDIENCE).issue(uuid.uuid4(), uuid.uuid4()).token
    assert (await verifier.verify(token)).roles == frozenset()


async def test_token_from_a_foreign_key_is_refused() -> None:
    ours = SigningKeyStore(KeyRing([generate_key()], LIFETIME))
    theirs = SigningKeyStore(KeyRing([generate_key()], LIFETIME))
    token = (
        AccessTokenIssuer(theirs, issuer=ISSUER, audience=AUDIENCE).issue(uuid.uuid4(), uuid.uuid4()).token
    )
    with pytest.raises(Unauthorized) as caught:
        await verifier_for(ours.jwks()).verify(token)
    assert caught.value.code == "invalid_token"


def test_configured_keys_from_pem_text_and_files(tmp_path: Path) -> None:
    first, second = generate_key(), generate_key(algorithm="ES256")
    path = tmp_path / "second.pem"
    path.write_bytes(second.private_pem())
    one_line_pem = first.private_pem().decode().replace("\n", "\\n")
    keys = keys_from_config(f"{one_line_pem}, {path}")
    assert [key.kid for key in keys] == [first.kid, second.kid]
    ring = KeyRing(keys, LIFETIME)
    # The first signs; every configured key stays published.
    assert ring.signing_key(0).kid == first.kid
    assert {k["kid"] for k in ring.jwks(10**10)["keys"]} == {first.kid, second.kid}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "names no key"),
        ("/nowhere/key.pem", "cannot read key file"),
        ("-----BEGIN PRIVATE KEY-----\\ngarbage\\n-----END PRIVATE KEY-----", "not a usable key"),
    ],
)
def test_bad_configured_keys_are_refused_with_a_reason(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        keys_from_config(value)


def test_rotation_schedule_publishes_early_and_retires_after_token_lifetime() -> None:
    old = generate_key(active_from=1000)
    new = generate_key(active_from=2000)
    ring = KeyRing([new, old], token_lifetime=LIFETIME, leeway=0)

    def published(now: float) -> set[str]:
        return {key.kid for key in ring.published(now)}

    # Before the new key's time it is published (verifiers learn it) but the old one signs.
    assert ring.signing_key(1500).kid == old.kid
    assert published(1500) == {old.kid, new.kid}
    # After: the new one signs; the old one stays until its last token expired.
    assert ring.signing_key(2000).kid == new.kid
    assert published(2000 + LIFETIME - 1) == {old.kid, new.kid}
    assert published(2000 + LIFETIME) == {new.kid}
    assert [key.kid for key in ring.expired(2000 + LIFETIME)] == [old.kid]


def test_key_directory_generates_once_and_rotation_prunes_expired_keys(tmp_path: Path) -> None:
    directory = KeyDirectory(tmp_path / "keys")
    first = directory.ensure_key()
    assert directory.ensure_key() == first
    assert len(first) == 1
    assert (directory.file_for(first[0]).stat().st_mode & 0o777) == 0o600

    second, removed = directory.rotate(now=10_000, activation_delay=60, token_lifetime=LIFETIME)
    assert removed == []
    assert second.active_from == 10_060
    third, removed = directory.rotate(now=20_000, activation_delay=0, token_lifetime=LIFETIME)
    # The first key stopped signing at 10,060: its tokens are long expired.
    assert [key.kid for key in removed] == [first[0].kid]
    assert [key.kid for key in directory.load()] == [third.kid, second.kid]


def test_store_from_config_generates_in_development_and_refuses_without_keys(tmp_path: Path) -> None:
    store = SigningKeyStore.from_config(
        None, tmp_path / "dev", token_lifetime=LIFETIME, generate_if_missing=True
    )
    again = SigningKeyStore.from_config(
        "", tmp_path / "dev", token_lifetime=LIFETIME, generate_if_missing=True
    )
    assert store.signing_key().kid == again.signing_key().kid  # generated once, then kept
    with pytest.raises(RuntimeError, match="JWT_SIGNING_KEYS"):
        SigningKeyStore.from_config(
            None, tmp_path / "empty", token_lifetime=LIFETIME, generate_if_missing=False
        )
    configured = generate_key()
    from_env = SigningKeyStore.from_config(
        configured.private_pem().decode(),
        tmp_path / "unused",
        token_lifetime=LIFETIME,
        generate_if_missing=True,
    )
    assert from_env.signing_key().kid == configured.kid
    assert not (tmp_path / "unused").exists()


async def test_store_picks_up_a_rotation_made_by_another_process(tmp_path: Path) -> None:
    clock = Clock(50_000)
    store = SigningKeyStore.from_config(
        None, tmp_path, token_lifetime=LIFETIME, generate_if_missing=True, clock=clock
    )
    store.reload_interval = 0
    old_kid = store.signing_key().kid
    old_token = issuer_for(store, clock).issue(uuid.uuid4(), uuid.uuid4()).token

    new, _ = KeyDirectory(tmp_path).rotate(now=clock.now, activation_delay=0, token_lifetime=LIFETIME)
    assert store.signing_key().kid == new.kid
    assert {k["kid"] for k in store.jwks()["keys"]} == {old_kid, new.kid}
    source = LocalKeySource(store)
    assert await source.key_for(old_kid) is not None  # old tokens still verify
    assert jwt.get_unverified_header(old_token)["kid"] == old_kid

    clock.now += LIFETIME + 61
    with pytest.raises(KeyError):
        await source.key_for(old_kid)
