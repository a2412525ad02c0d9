from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from foundation.auth_service.settings import AuthServiceSettings

ENV_EXAMPLE = Path(__file__).with_name(".env.example")


def test_env_example_lists_every_setting_with_a_comment() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    listed = {}
    for index, line in enumerate(lines):
        match = re.match(r"^([A-Z0-9_]+)=", line)
        if match:
            listed[match.group(1).lower()] = lines[index - 1]
    assert set(listed) == set(AuthServiceSettings.model_fields)
    assert all(comment.startswith("# ") for comment in listed.values())


def test_defaults_follow_the_issue() -> None:
    settings = AuthServiceSettings()
    assert settings.access_token_ttl == 900
    assert settings.refresh_grace_seconds == 10
    assert (settings.session_idle_timeout, settings.session_absolute_lifetime) == (7 * 86_400, 30 * 86_400)
    assert (settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism) == (
        19_456,
        2,
        1,
    )
    assert (settings.password_min_length, settings.password_max_length) == (8, 128)


def test_trusted_proxies_come_as_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1")
    assert AuthServiceSettings().trusted_proxies == ["10.0.0.0/8", "192.168.1.1"]
    monkeypatch.setenv("TRUSTED_PROXIES", "not-a-network")
    with pytest.raises(ValidationError):
        AuthServiceSettings()


def test_argon2_below_the_owasp_minimum_is_refused() -> None:
    with pytest.raises(ValidationError):
        AuthServiceSettings(argon2_memory_kib=8192)
