"""The gateway's route table: which service a path belongs to, and which routes are public or
sign-in routes (the HTTP endpoints the gateway answers itself are in ``api/``).

Paths are forwarded unchanged, so the gateway decides on the same path the service will
route on. Dot segments are refused: ``/auth/oauth/../me`` would look public here and be
normalised to a private route further along.
"""

from __future__ import annotations

from dataclasses import dataclass

SERVICES = ("auth", "history", "stats")

# (method or "*", exact path or prefix ending in "/") -> public
_PUBLIC: tuple[tuple[str, str], ...] = (
    ("POST", "/auth/register"),
    ("POST", "/auth/login"),
    ("POST", "/auth/refresh"),
    ("POST", "/auth/logout"),
    ("*", "/auth/oauth/"),
    # The second step of a sign-in, and signing in with a passkey: no access token yet.
    ("POST", "/auth/mfa/verify"),
    ("POST", "/auth/mfa/passkey-options"),
    ("POST", "/auth/passkeys/sign-in-options"),
    ("POST", "/auth/passkeys/sign-in"),
    # Mailed links (the token is the proof) and asking for them: no access token.
    ("POST", "/auth/email/verify"),
    ("POST", "/auth/email/resend"),
    ("POST", "/auth/password/forgot"),
    ("POST", "/auth/password/reset"),
    ("GET", "/auth/.well-known/jwks.json"),
    ("HEAD", "/auth/.well-known/jwks.json"),
)

# Sign-in routes: rate-limited per client address with the strict limit, by group.
_STRICT: tuple[tuple[str, str], ...] = (
    ("/auth/register", "register"),
    ("/auth/login", "login"),
    ("/auth/refresh", "refresh"),
    ("/auth/oauth/", "oauth"),
    ("/auth/email/resend", "account_mail"),
    ("/auth/password/forgot", "account_mail"),
    ("/auth/email/verify", "account_token"),
    ("/auth/password/reset", "account_token"),
    ("/auth/mfa/verify", "mfa"),
    ("/auth/mfa/passkey-options", "mfa"),
    ("/auth/passkeys/sign-in-options", "passkey"),
    ("/auth/passkeys/sign-in", "passkey"),
)


@dataclass(frozen=True, slots=True)
class RouteInfo:
    service: str
    public: bool
    strict_group: str | None  # "login", "register", ... for sign-in routes


def service_for(path: str) -> str | None:
    """``/auth/...`` -> "auth"; ``/history`` and ``/history/...`` -> "history"; else None."""
    for name in SERVICES:
        prefix = "/" + name
        if path == prefix or path.startswith(prefix + "/"):
            return name
    return None


def is_safe_path(path: str) -> bool:
    if "\x00" in path or "\\" in path or "//" in path:
        return False
    return not any(segment in {".", ".."} for segment in path.split("/"))


def _matches(rule: str, path: str) -> bool:
    return path.startswith(rule) if rule.endswith("/") else path == rule


def classify(method: str, path: str) -> RouteInfo | None:
    service = service_for(path)
    if service is None:
        return None
    public = any((m == "*" or m == method) and _matches(rule, path) for m, rule in _PUBLIC)
    strict = next((group for rule, group in _STRICT if _matches(rule, path)), None)
    return RouteInfo(service, public, strict)
