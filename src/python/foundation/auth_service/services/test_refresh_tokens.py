from __future__ import annotations

import base64

from foundation.auth_service.services.refresh_tokens import (
    looks_like_token,
    new_token,
    open_successor,
    seal_successor,
    token_hash,
)


def test_tokens_carry_256_random_bits_and_are_stored_as_sha256() -> None:
    token = new_token()
    assert len(base64.urlsafe_b64decode(token + "=")) == 32
    assert new_token() != token
    assert len(token_hash(token)) == 32
    assert token_hash(token) == token_hash(token)


def test_a_sealed_successor_opens_only_with_the_previous_token() -> None:
    previous, successor = new_token(), new_token()
    sealed = seal_successor(previous, successor)
    assert successor.encode() not in sealed
    assert open_successor(previous, sealed) == successor
    assert open_successor(new_token(), sealed) is None
    assert open_successor(previous, sealed[:-1] + bytes([sealed[-1] ^ 1])) is None
    assert open_successor(previous, b"short") is None


def test_only_token_shaped_strings_are_looked_up() -> None:
    assert looks_like_token(new_token())
    for value in ("", "short", "x" * 129, "has spaces in it here", "ünïcödé-characters-here", "a/b+c=" * 4):
        assert not looks_like_token(value)
