from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from foundation.auth_service.app import create_app
from foundation.auth_service.services.device_cookies import DeviceCookies, DeviceSecretError
from foundation.auth_service.services.login_throttle import client_network
from foundation.auth_service.settings import AuthServiceSettings
from tests.helpers.apps import serve_app

SECRET = "q" * 32
NEW_SECRET = "n" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_cookie_vouches_for_its_own_account_while_it_lasts() -> None:
    clock = Clock()
    devices = DeviceCookies([SECRET.encode()], max_age=3600, clock=clock)
    cookie = devices.issue("Owner@Example.com")
    assert devices.device_of(cookie, " owner@example.com") is not None  # as sign-in matches emails
    assert devices.device_of(cookie, "someone-else@example.com") is None
    assert devices.device_of(devices.issue("owner@example.com"), "owner@example.com") != devices.device_of(
        cookie, "owner@example.com"
    )
    version, issued, nonce, mac = cookie.split(".")
    assert devices.device_of(f"{version}.{int(issued) + 1}.{nonce}.{mac}", "owner@example.com") is None
    clock.now += 3601
    assert devices.device_of(cookie, "owner@example.com") is None


def test_a_rotated_secret_keeps_earlier_cookies_valid_until_it_is_removed() -> None:
    old = DeviceCookies([SECRET.encode()], max_age=3600)
    cookie = old.issue("owner@example.com")
    rotated = DeviceCookies([NEW_SECRET.encode(), SECRET.encode()], max_age=3600)
    assert rotated.device_of(cookie, "owner@example.com") is not None
    assert DeviceCookies([NEW_SECRET.encode()], max_age=3600).device_of(cookie, "owner@example.com") is None


def test_production_needs_a_real_secret_and_development_keeps_a_generated_one(tmp_path: Path) -> None:
    with pytest.raises(DeviceSecretError, match="must be set in production"):
        DeviceCookies.from_config(None, production=True, data_dir=tmp_path, max_age=60)
    with pytest.raises(DeviceSecretError, match="32 characters"):
        DeviceCookies.from_config("short", production=True, data_dir=tmp_path, max_age=60)
    with pytest.raises(ValueError, match="example value"):
        AuthServiceSettings(environment="production", login_device_cookie_secret="change-me-" + "x" * 32)
    first = DeviceCookies.from_config(None, production=False, data_dir=tmp_path, max_age=60)
    again = DeviceCookies.from_config(None, production=False, data_dir=tmp_path, max_age=60)
    assert again.device_of(first.issue("a@example.com"), "a@example.com") is not None  # same secret
    assert (tmp_path / "login-device-cookie.key").stat().st_mode & 0o077 == 0


async def test_the_app_refuses_to_start_in_production_without_the_secret(
    make_settings: Callable[..., AuthServiceSettings],
) -> None:
    async with serve_app(create_app(make_settings())):
        pass  # the key folder now holds a signing key: that is not what production lacks
    settings = make_settings(environment="production", jwt_issuer="https://api.foundation.test/auth")
    with pytest.raises(DeviceSecretError, match="LOGIN_DEVICE_COOKIE_SECRET"):
        async with serve_app(create_app(settings)):
            pass


@pytest.mark.parametrize(
    ("address", "counted_as"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("unknown", "unknown"),
    ],
)
def test_clients_are_counted_by_ipv4_address_or_ipv6_64(address: str, counted_as: str) -> None:
    assert client_network(address) == counted_as
