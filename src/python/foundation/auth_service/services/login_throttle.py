"""Sign-in throttling in Redis: guesses are bounded, and other people's guesses do not lock
the owner out (docs/auth.md, "Sign-in throttling").

Who is counted, in fixed windows of ``window`` seconds:

- a sign-in with a valid device cookie for its account (``device_cookies``) counts against
  that device only (``per_device``): a device that has signed in to the account before is
  not refused because someone else has been guessing;
- any other counts against the account from that client address (``per_account_address``,
  so one address cannot lock an account for everyone), the account from everywhere
  (``per_account``, a higher ceiling for guesses spread over many addresses), and the address
  over all accounts (``per_ip``).

An IPv6 client is counted by its /64 (a subscriber gets at least one and can rotate through
it at will); an IPv4-mapped address as the IPv4 one.

An attempt is reserved before its password is checked: one script refuses it when any of its
counters is at its limit (429 with ``Retry-After``, nothing counted, so waiting never grows),
else counts it in all of them, atomically, so N concurrent guesses run at most ``limit``
verifications. A failure keeps its count (no second call); a success gives it back and
clears the counters of the client it proved (its device, its account from its address); an
answer that says nothing about the password (the database away) gives it back as well.

The account key is a hash of the normalised email, the same whether or not the account
exists (no enumeration), and keeps emails out of Redis. Redis away: sign-in goes on without
throttling, logged as an error.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass

from redis.exceptions import RedisError

from foundation.auth_service.services.device_cookies import DeviceCookies, normalised_email
from foundation.auth_service.settings import AuthServiceSettings
from foundation.shared.errors import TooManyRequests
from foundation.shared.logging import get_logger
from foundation.shared.redis import Keys, create_redis_pipe
from foundation.shared.redis_pipe import RedisPipe

log = get_logger(__name__)

# KEYS: the counters; ARGV: the window in ms, then each counter's limit. Returns {0, 0} when
# the attempt is counted everywhere, else {the refusing counter's 1-based index, its ms left}
# (the counter at its limit that frees last, so one Retry-After is enough).
RESERVE = """
local window = tonumber(ARGV[1])
local refusing, wait = 0, 0
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i + 1]) then
    local left = redis.call('PTTL', key)
    if left < 0 then
      redis.call('PEXPIRE', key, window)
      left = window
    end
    if left > wait then
      refusing, wait = i, left
    end
  end
end
if refusing > 0 then
  return {refusing, wait}
end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then
    redis.call('PEXPIRE', key, window)
  end
end
return {0, 0}
"""

# KEYS: an attempt's counters; ARGV: per counter "1" to clear it, "0" to give the attempt back
# (a counter back at zero goes, so the next window starts at the next failure).
RELEASE = """
for i, key in ipairs(KEYS) do
  if ARGV[i] ~= '1' and tonumber(redis.call('GET', key) or '0') > 1 then
    redis.call('DECR', key)
  else
    redis.call('DEL', key)
  end
end
return 0
"""

RESERVE_SHA = hashlib.sha1(RESERVE.encode(), usedforsecurity=False).hexdigest()
RELEASE_SHA = hashlib.sha1(RELEASE.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Limit:
    name: str
    key: str
    limit: int
    of_the_client: bool  # the proven client's own count: cleared by its success


@dataclass(frozen=True)
class Attempt:
    """A reserved sign-in attempt: the counters it was counted in."""

    limits: tuple[Limit, ...]


def client_network(ip: str) -> str:
    """The address a client is counted by: IPv4 as is, IPv6 by its /64."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip  # "unknown": one shared counter
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class LoginThrottle:
    def __init__(
        self,
        redis: RedisPipe,
        keys: Keys,
        devices: DeviceCookies,
        *,
        per_device: int,
        per_account_address: int,
        per_account: int,
        per_ip: int,
        window: int,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.devices = devices
        self.per_device = per_device
        self.per_account_address = per_account_address
        self.per_account = per_account
        self.per_ip = per_ip
        self.window = window

    @classmethod
    def for_service(cls, settings: AuthServiceSettings) -> LoginThrottle:
        """The service's throttle, on a pipelined Redis connection of its own (``aclose``)."""
        secret = settings.login_device_cookie_secret
        devices = DeviceCookies.from_config(
            secret.get_secret_value() if secret else None,
            production=settings.is_production,
            data_dir=settings.jwt_keys_dir,
            max_age=settings.login_device_cookie_max_age,
        )
        return cls(
            create_redis_pipe(settings),
            Keys(settings.redis_key_prefix),
            devices,
            per_device=settings.login_max_failures_per_device,
            per_account_address=settings.login_max_failures_per_account_address,
            per_account=settings.login_max_failures_per_account,
            per_ip=settings.login_max_failures_per_ip,
            window=settings.login_failure_window,
        )

    def _limits(self, email: str, ip: str, device_cookie: str | None) -> tuple[Limit, ...]:
        key = self.keys
        device = self.devices.device_of(device_cookie, email) if device_cookie else None
        if device is not None:
            return (
                Limit("login-device", key("auth", "login-failures", "device", device), self.per_device, True),
            )
        account = hashlib.sha256(normalised_email(email).encode()).hexdigest()[:32]
        network = client_network(ip)
        return (
            Limit(
                "login-account-address",
                key("auth", "login-failures", "account-address", account, network),
                self.per_account_address,
                True,
            ),
            Limit(
                "login-account", key("auth", "login-failures", "account", account), self.per_account, False
            ),
            Limit("login-ip", key("auth", "login-failures", "ip", network), self.per_ip, False),
        )

    async def reserve(self, email: str, ip: str, device_cookie: str | None = None) -> Attempt | None:
        """Count this attempt before its password is checked, or raise ``TooManyRequests``
        when one of its counters is at its limit. None when Redis is away (not throttled)."""
        limits = self._limits(email, ip, device_cookie)
        args: list[str | int] = [self.window * 1000, *(limit.limit for limit in limits)]
        try:
            refusing, wait_ms = await self.redis.evalsha(
                RESERVE_SHA, RESERVE, [limit.key for limit in limits], args
            )
        except RedisError as exc:
            # Fail open: Redis being down must not stop every sign-in; it is logged loudly.
            log.error("login throttle unavailable", error=str(exc))
            return None
        if refusing:
            limit = limits[int(refusing) - 1]
            retry_after = max(1, math.ceil(int(wait_ms) / 1000))
            raise TooManyRequests(
                "Too many failed sign-in attempts. Try again later.",
                retry_after=retry_after,
                code="too_many_attempts",
                headers={
                    "RateLimit-Policy": f'"{limit.name}";q={limit.limit};w={self.window}',
                    "RateLimit": f'"{limit.name}";r=0;t={retry_after}',
                },
            )
        return Attempt(limits)

    async def succeeded(self, attempt: Attempt | None) -> None:
        """The password was right: give the attempt back, clear the proven client's counts."""
        await self._release(attempt, clear=True)

    async def undecided(self, attempt: Attempt | None) -> None:
        """The attempt ended without saying whether the password was right: give it back."""
        await self._release(attempt, clear=False)

    async def _release(self, attempt: Attempt | None, *, clear: bool) -> None:
        if attempt is None:
            return
        flags: list[str | int] = ["1" if clear and limit.of_the_client else "0" for limit in attempt.limits]
        try:
            await self.redis.evalsha(RELEASE_SHA, RELEASE, [limit.key for limit in attempt.limits], flags)
        except RedisError as exc:
            log.error("login throttle unavailable", error=str(exc))

    async def aclose(self) -> None:
        await self.redis.aclose()
