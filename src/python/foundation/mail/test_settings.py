from __future__ import annotations

import pytest
from pydantic import ValidationError

from foundation.mail.settings import MailSettings


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "user", "password"),
    [
        ("smtp://mail.test", "mail.test", 25, False, None, None),
        ("smtp://mail.test:2525", "mail.test", 2525, False, None, None),
        ("smtps://me%40shop.test:p%3Ass@mail.test", "mail.test", 465, True, "me@shop.test", "p:ss"),
    ],
)
def test_smtp_url_gives_host_port_tls_and_credentials(
    url: str, host: str, port: int, tls: bool, user: str | None, password: str | None
) -> None:
    target = MailSettings(smtp_url=url).smtp_target()
    assert target is not None
    assert (target.host, target.port, target.implicit_tls, target.username) == (host, port, tls, user)
    assert (target.password.get_secret_value() if target.password else None) == password


def test_no_smtp_url_means_no_target() -> None:
    assert MailSettings().smtp_target() is None


@pytest.mark.parametrize("url", ["http://mail.test", "smtp://", "mail.test:25"])
def test_a_wrong_smtp_url_is_refused_at_start(url: str) -> None:
    with pytest.raises(ValidationError, match="SMTP_URL"):
        MailSettings(smtp_url=url)


@pytest.mark.parametrize("sender", ["no address", "Shop <no-reply>", "a@b.test\r\nBcc: x@y.test"])
def test_a_wrong_mail_from_is_refused_at_start(sender: str) -> None:
    with pytest.raises(ValidationError):
        MailSettings(mail_from=sender)


def test_the_smtp_password_is_not_shown() -> None:
    settings = MailSettings(smtp_url="smtp://me:hunter22@mail.test")
    assert "hunter22" not in repr(settings)
