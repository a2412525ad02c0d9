"""Random values of an authorization request: state, nonce and the PKCE (RFC 7636) pair."""

from __future__ import annotations

from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

SECRET_LENGTH = 43  # letters and digits from the OS CSPRNG: ~256 bits


def new_secret(length: int = SECRET_LENGTH) -> str:
    """A random state, nonce or code verifier (RFC 7636 allows 43-128 characters)."""
    return str(generate_token(length))


def s256_challenge(code_verifier: str) -> str:
    return str(create_s256_code_challenge(code_verifier))
