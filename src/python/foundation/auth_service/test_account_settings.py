from __future__ import annotations

import pytest
from pydantic import ValidationError

from foundation.auth_service.settings import AuthServiceSettings


def test_the_account_lifecycle_defaults() -> None:
    settings = AuthServiceSettings()
    assert settings.smtp_target() is None  # no mail server: messages wait in the outbox
    assert settings.unverified_sign_in is True
    assert (settings.email_verification_ttl_seconds, settings.password_reset_ttl_seconds) == (86_400, 1_800)
    assert settings.password_reset_url.endswith("#token={token}")  # kept out of servers' logs


@pytest.mark.parametrize(
    "url", ["https://app.example.com/reset", "javascript:alert(1)//{token}", "app.example.com/{token}"]
)
def test_a_link_setting_must_be_an_http_url_holding_the_token(url: str) -> None:
    with pytest.raises(ValidationError, match="holding"):
        AuthServiceSettings(password_reset_url=url)


def test_mail_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_URL", "smtps://mail.example.com")
    monkeypatch.setenv("MAIL_FROM", "Shop <no-reply@shop.example>")
    settings = AuthServiceSettings()
    target = settings.smtp_target()
    assert target is not None and (target.host, target.port, target.implicit_tls) == (
        "mail.example.com",
        465,
        True,
    )
    assert settings.mail_from == "Shop <no-reply@shop.example>"
