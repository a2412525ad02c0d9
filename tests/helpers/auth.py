"""Users and tokens for tests: a signer with its own Ed25519 key and a verifier trusting it.

Services under test get ``test_verifier(signer)`` instead of fetching auth-service's JWKS;
tokens come from ``signer.issue(...)`` with any claim or header overridden for unhappy paths.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from foundation.auth.keys import StaticKeySource
from foundation.auth.verifier import TokenVerifier

TEST_ISSUER = "http://127.0.0.1:8000/auth"
TEST_AUDIENCE = "foundation-api"


class TestSigner:
    __test__ = False  # not a test class

    def __init__(self, kid: str | None = None, algorithm: str = "EdDSA") -> None:
        self.algorithm = algorithm
        self.private_key: Any = (
            ed25519.Ed25519PrivateKey.generate()
            if algorithm == "EdDSA"
            else ec.generate_private_key(ec.SECP256R1())
        )
        self.kid = kid or uuid.uuid4().hex[:16]

    @property
    def public_jwk(self) -> dict[str, Any]:
        algo = jwt.algorithms.OKPAlgorithm if self.algorithm == "EdDSA" else jwt.algorithms.ECAlgorithm
        jwk: dict[str, Any] = json.loads(algo.to_jwk(self.private_key.public_key()))
        jwk.update(kid=self.kid, use="sig", alg=self.algorithm)
        return jwk

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}

    def key_source(self) -> StaticKeySource:
        return StaticKeySource(self.jwks)

    def issue(
        self,
        user_id: uuid.UUID | None = None,
        session_id: uuid.UUID | None = None,
        roles: Iterable[str] = (),
        ttl: int = 900,
        issuer: str = TEST_ISSUER,
        audience: str = TEST_AUDIENCE,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": str(user_id or uuid.uuid4()),
            "sid": str(session_id or uuid.uuid4()),
            "roles": roles if isinstance(roles, str) else list(roles),  # a str: malformed on purpose
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        }
        payload.update(claims)
        header = {"kid": self.kid, "typ": "at+jwt", **(headers or {})}
        return jwt.encode(payload, self.private_key, algorithm=self.algorithm, headers=header)


def test_verifier(*signers: TestSigner) -> TokenVerifier:
    keys = {"keys": [signer.public_jwk for signer in signers]}
    return TokenVerifier(StaticKeySource(keys), issuer=TEST_ISSUER, audience=TEST_AUDIENCE)


test_verifier.__test__ = False  # type: ignore[attr-defined]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
