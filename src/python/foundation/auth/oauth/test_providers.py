"""The provider library against the stand-in identity provider over real HTTP."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from foundation.auth.jwks import JwksPolicy
from foundation.auth.oauth import (
    AppleProvider,
    GoogleProvider,
    InvalidGrant,
    InvalidIdToken,
    ProviderUnavailable,
    parse_apple_user,
)
from foundation.auth.oauth.apple import APPLE_AUDIENCE, load_private_key
from foundation.auth.oauth.base import ProviderMetadata
from foundation.auth.oauth.pkce import new_secret, s256_challenge
from foundation.devstack.embedded import free_port
from tests.helpers.idp import StandInIdentityProvider

REDIRECT = "https://app.example.com/auth/callback"


@pytest.fixture(scope="module")
def google_idp() -> Iterator[StandInIdentityProvider]:
    with StandInIdentityProvider.google() as idp:
        yield idp


@pytest.fixture(scope="module")
def apple_idp() -> Iterator[StandInIdentityProvider]:
    with StandInIdentityProvider.apple() as idp:
        yield idp


@pytest.fixture(autouse=True)
def _no_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    for name in ("google_idp", "apple_idp"):
        if name in request.fixturenames:
            request.getfixturevalue(name).faults.clear()


@pytest.fixture()
async def google(google_idp: StandInIdentityProvider) -> AsyncIterator[GoogleProvider]:
    provider = GoogleProvider(
        client_id=google_idp.client_id,
        client_secret=str(google_idp.client_secret),
        native_client_ids=google_idp.native_client_ids,
        metadata_url=google_idp.metadata_url,
    )
    yield provider
    await provider.aclose()


def apple_provider(idp: StandInIdentityProvider, **kwargs: object) -> AppleProvider:
    return AppleProvider(
        client_id=idp.client_id,
        team_id=str(idp.team_id),
        key_id=str(idp.key_id),
        private_key=str(idp.team_private_key_pem),
        native_client_ids=idp.native_client_ids,
        metadata_url=idp.metadata_url,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture()
async def apple(apple_idp: StandInIdentityProvider) -> AsyncIterator[AppleProvider]:
    provider = apple_provider(apple_idp)
    yield provider
    await provider.aclose()


async def sign_in(provider: GoogleProvider | AppleProvider, idp: StandInIdentityProvider):  # type: ignore[no-untyped-def]
    state, nonce, verifier = new_secret(), new_secret(), new_secret()
    url = await provider.authorization_url(REDIRECT, state=state, nonce=nonce, code_verifier=verifier)
    answer = await idp.authorize(url)
    assert answer.state == state
    tokens = await provider.exchange_code(answer.code, redirect_uri=REDIRECT, code_verifier=verifier)
    return answer, tokens, nonce


async def test_authorization_url_carries_state_nonce_and_pkce_s256(google: GoogleProvider) -> None:
    url = await google.authorization_url(REDIRECT, state="s" * 43, nonce="n" * 43, code_verifier="v" * 43)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query == {
        "response_type": "code",
        "client_id": google.client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid email profile",
        "state": "s" * 43,
        "nonce": "n" * 43,
        "code_challenge": s256_challenge("v" * 43),
        "code_challenge_method": "S256",
    }


async def test_google_sign_in_returns_the_verified_identity(
    google: GoogleProvider, google_idp: StandInIdentityProvider
) -> None:
    _, tokens, nonce = await sign_in(google, google_idp)
    identity = await google.verify_id_token(tokens.id_token, nonce=nonce, access_token=tokens.access_token)
    assert (identity.provider, identity.subject) == ("google", google_idp.user.sub)
    assert (identity.email, identity.email_verified) == (google_idp.user.email, True)
    assert identity.name == "Some One"
    assert str(tokens.access_token).startswith("google-access-")


async def test_apple_sign_in_posts_the_form_with_the_name_on_the_first_authorization_only(
    apple: AppleProvider, apple_idp: StandInIdentityProvider
) -> None:
    apple_idp.user = apple_idp.user.__class__(
        sub="first.time.user", email="new@privaterelay.example.com", first_name="Ada", last_name="Lovelace"
    )
    first, tokens, nonce = await sign_in(apple, apple_idp)
    assert (first.form_post, first.redirect_uri) == (True, REDIRECT)
    assert parse_apple_user(first.params["user"]) == parse_apple_user(
        {"name": {"firstName": "Ada", "lastName": "Lovelace"}, "email": "new@privaterelay.example.com"}
    )
    identity = await apple.verify_id_token(tokens.id_token, nonce=nonce)
    assert (identity.subject, identity.email_verified) == ("first.time.user", True)  # Apple sent "true"
    assert str(tokens.refresh_token).startswith("apple-refresh-")
    second, _, _ = await sign_in(apple, apple_idp)
    assert "user" not in second.params


async def test_wrong_code_verifier_is_refused_by_the_provider(
    google: GoogleProvider, google_idp: StandInIdentityProvider
) -> None:
    url = await google.authorization_url(
        REDIRECT, state=new_secret(), nonce=new_secret(), code_verifier=new_secret()
    )
    answer = await google_idp.authorize(url)
    with pytest.raises(InvalidGrant) as caught:
        await google.exchange_code(answer.code, redirect_uri=REDIRECT, code_verifier=new_secret())
    assert (caught.value.status, caught.value.code) == (400, "invalid_grant")


async def test_a_code_works_once(google: GoogleProvider, google_idp: StandInIdentityProvider) -> None:
    verifier = new_secret()
    url = await google.authorization_url(
        REDIRECT, state=new_secret(), nonce=new_secret(), code_verifier=verifier
    )
    answer = await google_idp.authorize(url)
    await google.exchange_code(answer.code, redirect_uri=REDIRECT, code_verifier=verifier)
    with pytest.raises(InvalidGrant):
        await google.exchange_code(answer.code, redirect_uri=REDIRECT, code_verifier=verifier)


async def test_token_endpoint_outage_is_a_bad_gateway(
    google: GoogleProvider, google_idp: StandInIdentityProvider
) -> None:
    google_idp.faults.token_status = 503
    with pytest.raises(ProviderUnavailable) as caught:
        await sign_in(google, google_idp)
    assert (caught.value.status, caught.value.code) == (502, "provider_unavailable")


@pytest.mark.parametrize(
    ("fault", "value", "detail"),
    [
        ("audience", "someone-elses-client", "another audience"),
        ("expired", True, "expired"),
        ("bad_signature", True, "signature"),
        ("nonce", "a-nonce-from-another-sign-in", "nonce"),
        ("issuer", "https://evil.example.com", "another issuer"),
    ],
)
async def test_unhappy_id_tokens_are_refused(
    google: GoogleProvider, google_idp: StandInIdentityProvider, fault: str, value: object, detail: str
) -> None:
    setattr(google_idp.faults, fault, value)
    _, tokens, nonce = await sign_in(google, google_idp)
    with pytest.raises(InvalidIdToken, match=detail) as caught:
        await google.verify_id_token(tokens.id_token, nonce=nonce, access_token=tokens.access_token)
    assert (caught.value.status, caught.value.code) == (401, "invalid_id_token")


async def test_id_token_for_another_access_token_is_refused(
    google: GoogleProvider, google_idp: StandInIdentityProvider
) -> None:
    _, tokens, nonce = await sign_in(google, google_idp)
    with pytest.raises(InvalidIdToken, match="access token"):
        await google.verify_id_token(tokens.id_token, nonce=nonce, access_token="another-access-token")


async def test_unsigned_and_hmac_id_tokens_are_refused(
    google: GoogleProvider, google_idp: StandInIdentityProvider
) -> None:
    claims = {"iss": google_idp.issuer, "aud": google.client_id, "sub": "x", "exp": int(time.time()) + 60}
    hmac_token = jwt.encode(claims, b"k" * 32, algorithm="HS256", headers={"kid": google_idp.current_kid})
    header_none = "eyJhbGciOiJub25lIn0"  # {"alg":"none"}
    unsigned = header_none + "." + hmac_token.split(".")[1] + "."
    for token in (hmac_token, unsigned):
        with pytest.raises(InvalidIdToken, match="algorithm"):
            await google.verify_id_token(token, nonce="n")
    with pytest.raises(InvalidIdToken, match="not a signed JWT"):
        await google.verify_id_token("not-a-jwt", nonce="n")


async def test_native_app_audience_is_accepted_and_others_are_not(
    google: GoogleProvider, google_idp: StandInIdentityProvider
) -> None:
    token = google_idp.issue_id_token(nonce="native-nonce", audience="ios-client.apps.example.com")
    identity = await google.verify_id_token(token, nonce="native-nonce", native=True)
    assert identity.subject == google_idp.user.sub
    stranger = google_idp.issue_id_token(nonce="native-nonce", audience="android.someone-else.example.com")
    with pytest.raises(InvalidIdToken, match="audience"):
        await google.verify_id_token(stranger, nonce="native-nonce", native=True)


async def test_apple_native_nonce_may_be_the_sha256_of_the_raw_nonce(
    apple: AppleProvider, apple_idp: StandInIdentityProvider
) -> None:
    raw = new_secret()
    hashed = hashlib.sha256(raw.encode()).hexdigest()
    token = apple_idp.issue_id_token(nonce=hashed, audience="com.example.app")
    assert (await apple.verify_id_token(token, nonce=raw, native=True)).subject == apple_idp.user.sub
    with pytest.raises(InvalidIdToken, match="nonce"):  # the web flow compares the nonce as sent
        await apple.verify_id_token(apple_idp.issue_id_token(nonce=hashed), nonce=raw)


async def test_id_token_without_nonce_is_refused(
    google: GoogleProvider, google_idp: StandInIdentityProvider
) -> None:
    with pytest.raises(InvalidIdToken, match="no nonce"):
        await google.verify_id_token(google_idp.issue_id_token(nonce=None), nonce="expected")


async def test_rotated_provider_key_is_fetched_once_and_forged_kids_do_not_refetch(
    google_idp: StandInIdentityProvider,
) -> None:
    provider = GoogleProvider(
        client_id=google_idp.client_id,
        client_secret="x",
        metadata_url=google_idp.metadata_url,
        jwks_policy=JwksPolicy(min_refresh_interval=0.0),
    )
    try:
        await provider.verify_id_token(google_idp.issue_id_token(nonce="n"), nonce="n")
        assert provider.jwks.fetches == 1
        await provider.verify_id_token(google_idp.issue_id_token(nonce="n"), nonce="n")
        assert provider.jwks.fetches == 1  # cached
        google_idp.rotate_signing_key()
        await provider.verify_id_token(google_idp.issue_id_token(nonce="n"), nonce="n")
        assert provider.jwks.fetches == 2  # unknown kid: refetched once
    finally:
        await provider.aclose()
    throttled = GoogleProvider(
        client_id=google_idp.client_id, client_secret="x", metadata_url=google_idp.metadata_url
    )
    try:
        await throttled.verify_id_token(google_idp.issue_id_token(nonce="n"), nonce="n")
        forged = google_idp.sign_with_current_key({"sub": "x"}, kid="forged")
        for _ in range(3):
            with pytest.raises(InvalidIdToken, match="unknown key"):
                await throttled.verify_id_token(forged, nonce="n")
        assert throttled.jwks.fetches == 1
    finally:
        await throttled.aclose()


async def test_a_key_the_provider_withdraws_stops_verifying_once_the_cached_set_expires(
    google_idp: StandInIdentityProvider,
) -> None:
    now = [1000.0]
    provider = GoogleProvider(
        client_id=google_idp.client_id,
        client_secret="x",
        metadata_url=google_idp.metadata_url,
        jwks_clock=lambda: now[0],
    )
    try:
        old_kid = google_idp.current_kid
        signed_by_old = google_idp.issue_id_token(nonce="n")
        await provider.verify_id_token(signed_by_old, nonce="n")
        google_idp.rotate_signing_key()
        google_idp.withdraw_signing_key(old_kid)
        now[0] += 299  # the set is fresh for 300 s (Google's max-age is capped at 5 minutes)
        assert (await provider.verify_id_token(signed_by_old, nonce="n")).subject == google_idp.user.sub
        assert provider.jwks.fetches == 1
        now[0] += 2
        with pytest.raises(InvalidIdToken, match="unknown key"):
            await provider.verify_id_token(signed_by_old, nonce="n")
        assert provider.jwks.fetches == 2
        assert await provider.verify_id_token(google_idp.issue_id_token(nonce="n"), nonce="n")
    finally:
        await provider.aclose()


async def test_unreachable_provider_is_a_bad_gateway() -> None:
    provider = GoogleProvider(
        client_id="c",
        client_secret="s",
        metadata_url=f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration",
    )
    try:
        with pytest.raises(ProviderUnavailable, match="discovery"):
            await provider.authorization_url(REDIRECT, state="s", nonce="n", code_verifier="v" * 43)
    finally:
        await provider.aclose()


def test_discovery_document_must_name_the_issuer_it_was_fetched_from() -> None:
    document = {
        "issuer": "https://accounts.google.com",
        "authorization_endpoint": "https://a",
        "token_endpoint": "https://t",
        "jwks_uri": "https://j",
    }
    meta = ProviderMetadata.from_document(
        document, "https://accounts.google.com/.well-known/openid-configuration"
    )
    assert meta.id_token_signing_alg_values_supported == ("RS256",)
    with pytest.raises(ValueError, match="another issuer"):
        ProviderMetadata.from_document(document, "https://evil.example.com/.well-known/openid-configuration")
    with pytest.raises(ValueError, match="lacks"):
        ProviderMetadata.from_document({"issuer": "x"}, "x/.well-known/openid-configuration")


def test_google_accepts_both_forms_of_its_real_issuer() -> None:
    provider = GoogleProvider(client_id="c", client_secret="s")
    real = ProviderMetadata("https://accounts.google.com", "a", "t", "j")
    assert provider.accepted_issuers(real) == ["https://accounts.google.com", "accounts.google.com"]
    assert provider.accepted_issuers(ProviderMetadata("http://127.0.0.1:1", "a", "t", "j")) == [
        "http://127.0.0.1:1"
    ]


def decode_client_secret(secret: str, idp: StandInIdentityProvider) -> dict[str, object]:
    """The claims of a client secret, checked against the team's public key as Apple does
    (at the provider's fixed test time, not this machine's)."""
    assert idp.team_public_key is not None
    return jwt.decode(
        secret,
        idp.team_public_key,
        algorithms=["ES256"],
        audience=APPLE_AUDIENCE,
        options={"verify_exp": False, "verify_iat": False},
    )


async def test_apple_client_secret_is_the_team_signed_jwt_apple_expects(
    apple_idp: StandInIdentityProvider,
) -> None:
    now = [1_800_000_000.0]
    provider = apple_provider(apple_idp, clock=lambda: now[0], client_secret_seconds=30 * 86400)
    try:
        secret = await provider.client_secret()
        header = jwt.get_unverified_header(secret)
        claims = decode_client_secret(secret, apple_idp)
        assert (header["alg"], header["kid"]) == ("ES256", apple_idp.key_id)
        assert claims == {
            "iss": apple_idp.team_id,
            "sub": apple_idp.client_id,
            "aud": APPLE_AUDIENCE,
            "iat": 1_800_000_000,
            "exp": 1_800_000_000 + 30 * 86400,
        }
        now[0] += 14 * 86400
        assert await provider.client_secret() == secret  # kept while young
        now[0] += 2 * 86400
        renewed = await provider.client_secret()  # past half its life: a new one
        assert renewed != secret
        fresh = decode_client_secret(renewed, apple_idp)
        assert fresh["iat"] == int(now[0])
    finally:
        await provider.aclose()


def test_apple_client_secret_may_not_outlive_six_months(apple_idp: StandInIdentityProvider) -> None:
    with pytest.raises(ValueError, match="six months"):
        apple_provider(apple_idp, client_secret_seconds=200 * 86400)


async def test_token_endpoint_refuses_a_client_secret_signed_by_another_team(
    apple_idp: StandInIdentityProvider,
) -> None:
    other_team = ec.generate_private_key(ec.SECP256R1())
    provider = apple_provider(apple_idp)
    provider._key = other_team  # what a wrong OAUTH_APPLE_PRIVATE_KEY amounts to
    try:
        with pytest.raises(ProviderUnavailable, match="401"):
            await sign_in(provider, apple_idp)
    finally:
        await provider.aclose()


async def test_apple_revocation_reaches_the_provider(
    apple: AppleProvider, apple_idp: StandInIdentityProvider
) -> None:
    await apple.revoke("apple-refresh-to-revoke")
    assert {"token": "apple-refresh-to-revoke", "hint": "refresh_token"} in apple_idp.revoked


def test_private_key_is_read_from_pem_text_or_a_file(apple_idp: StandInIdentityProvider, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pem = str(apple_idp.team_private_key_pem)
    path = tmp_path / "AuthKey_TEST.p8"
    path.write_text(pem)
    numbers = load_private_key(pem).private_numbers()
    assert load_private_key(str(path)).private_numbers() == numbers
    assert load_private_key(pem.replace("\n", "\\n")).private_numbers() == numbers
    public_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for wrong in (public_pem.decode(), p384.decode()):
        with pytest.raises(ValueError, match="P-256 private key"):
            load_private_key(wrong)


@pytest.mark.parametrize(
    ("raw", "name", "email"),
    [
        (
            '{"name":{"firstName":"Ada","lastName":"Lovelace"},"email":"a@example.com"}',
            "Ada Lovelace",
            "a@example.com",
        ),
        ('{"name":{"firstName":"Ada"}}', "Ada", None),
        ('{"email":"a@example.com"}', None, "a@example.com"),
    ],
)
def test_apple_user_json_gives_the_name(raw: str, name: str | None, email: str | None) -> None:
    user = parse_apple_user(raw)
    assert user is not None
    assert (user.name, user.email) == (name, email)


@pytest.mark.parametrize("raw", [None, "", "not json", "[1, 2]"])
def test_apple_user_json_that_is_missing_or_malformed_gives_nothing(raw: str | None) -> None:
    assert parse_apple_user(raw) is None
