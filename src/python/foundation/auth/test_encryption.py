from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from foundation.auth.encryption import (
    DEVELOPMENT_KEY_FILE,
    KeyConfigurationError,
    TokenCipher,
    TokenEncryptionError,
    TokenEncryptionKey,
    development_cipher,
    parse_keys,
    token_cipher,
)

OLD = TokenEncryptionKey.generate("2025-01")
NEW = TokenEncryptionKey.generate("2026-06")


def test_round_trip_hides_the_plaintext_and_names_the_key() -> None:
    cipher = TokenCipher([NEW])
    sealed = cipher.encrypt("ya29.secret-access-token", b"google:123:access_token")
    assert "secret" not in sealed
    assert sealed.startswith("v1.2026-06.")
    assert cipher.decrypt(sealed, b"google:123:access_token") == "ya29.secret-access-token"


def test_same_plaintext_encrypts_differently_each_time() -> None:
    cipher = TokenCipher([NEW])
    assert cipher.encrypt("token") != cipher.encrypt("token")


def test_value_moved_to_another_row_does_not_decrypt() -> None:
    cipher = TokenCipher([NEW])
    sealed = cipher.encrypt("refresh", b"apple:alice:refresh_token")
    with pytest.raises(TokenEncryptionError, match="authentication"):
        cipher.decrypt(sealed, b"apple:mallory:refresh_token")


def test_tampered_ciphertext_is_refused() -> None:
    cipher = TokenCipher([NEW])
    sealed = cipher.encrypt("refresh")
    prefix, body = sealed.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[-1] ^= 1
    forged = prefix + "." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(TokenEncryptionError, match="authentication"):
        cipher.decrypt(forged)


def test_relabelled_key_id_is_refused() -> None:
    # Two keys with the same bytes but different ids: the id is authenticated.
    twin = TokenEncryptionKey("twin", NEW.key)
    sealed = TokenCipher([NEW]).encrypt("refresh")
    relabelled = sealed.replace("v1.2026-06.", "v1.twin.", 1)
    with pytest.raises(TokenEncryptionError, match="authentication"):
        TokenCipher([twin]).decrypt(relabelled)


@pytest.mark.parametrize(
    "garbage", ["", "plaintext-token", "v2.k.AAAA", "v1.k.", "v1.2026-06.AAAA", "v1.2026-06.@@@"]
)
def test_malformed_ciphertexts_are_refused(garbage: str) -> None:
    with pytest.raises(TokenEncryptionError):
        TokenCipher([NEW]).decrypt(garbage)


def test_rotation_decrypts_old_values_and_reencrypts_them_under_the_newest_key() -> None:
    old_value = TokenCipher([OLD]).encrypt("refresh", b"ctx")
    rotated = TokenCipher([NEW, OLD])
    assert rotated.current_kid == "2026-06"
    assert rotated.needs_reencryption(old_value)
    assert rotated.decrypt(old_value, b"ctx") == "refresh"
    moved = rotated.reencrypt(old_value, b"ctx")
    assert not rotated.needs_reencryption(moved)
    assert TokenCipher([NEW]).decrypt(moved, b"ctx") == "refresh"


def test_value_sealed_with_a_retired_key_names_the_missing_key() -> None:
    old_value = TokenCipher([OLD]).encrypt("refresh")
    with pytest.raises(TokenEncryptionError, match="2025-01"):
        TokenCipher([NEW]).decrypt(old_value)


def test_setting_is_parsed_newest_first() -> None:
    cipher = TokenCipher.from_setting(f" {NEW.spec()} , {OLD.spec()} ")
    assert cipher.current_kid == "2026-06"
    assert [k.kid for k in parse_keys([NEW.spec(), OLD.spec()])] == ["2026-06", "2025-01"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("no-colon", "kid:base64url"),
        ("k:" + base64.urlsafe_b64encode(b"short").decode(), "32 bytes"),
        ("bad kid:" + base64.urlsafe_b64encode(bytes(32)).decode(), "key id"),
        ("k:!!!", "base64url|32 bytes"),
        ("", "at least one"),
    ],
)
def test_malformed_settings_are_refused_with_a_reason(setting: str, message: str) -> None:
    with pytest.raises(KeyConfigurationError, match=message):
        TokenCipher.from_setting(setting)


def test_duplicate_key_ids_are_refused() -> None:
    with pytest.raises(KeyConfigurationError, match="unique"):
        TokenCipher([NEW, TokenEncryptionKey("2026-06", OLD.key)])


def test_key_repr_does_not_show_the_key() -> None:
    assert _b64(NEW.key) not in repr(NEW)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_development_key_is_generated_once_in_the_data_folder_private_to_its_owner(tmp_path: Path) -> None:
    first = development_cipher(tmp_path / "data")
    sealed = first.encrypt("refresh")
    key_file = tmp_path / "data" / DEVELOPMENT_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = development_cipher(tmp_path / "data")
    assert again.decrypt(sealed) == "refresh"


def test_configured_keys_win_over_the_development_key(tmp_path: Path) -> None:
    cipher = token_cipher(NEW.spec(), production=False, data_dir=tmp_path)
    assert cipher.current_kid == "2026-06"
    assert not (tmp_path / DEVELOPMENT_KEY_FILE).exists()


def test_production_without_keys_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigurationError, match="OAUTH_TOKEN_ENCRYPTION_KEYS"):
        token_cipher("", production=True, data_dir=tmp_path)
    assert token_cipher(None, production=False, data_dir=tmp_path).current_kid.startswith("dev-")
