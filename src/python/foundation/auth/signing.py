"""Issuing access tokens: signing keys, their rotation schedule, and the JWT itself.

Only auth-service signs; everyone else verifies (``foundation.auth.verifier``) against the
public keys it publishes. Keys are Ed25519 (EdDSA, preferred) or P-256 (ES256). A key's
``kid`` is its RFC 7638 thumbprint, so the same key always has the same ``kid``.

Where keys come from (``SigningKeyStore.from_config``):

- ``JWT_SIGNING_KEYS``: PEM text or PEM file paths, comma-separated. The first signs; the
  others stay published so tokens they signed keep verifying until the operator removes them.
- otherwise a key folder (``JWT_KEYS_DIR``) of ``key-<active_from>-<kid>.pem`` files. In
  development an empty folder gets a generated key. ``rotate`` adds a key that starts signing
  after a delay (so every verifier's JWKS cache can learn it first) and keeps older public
  keys published until every token they signed has expired; then it deletes them.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

TOKEN_TYPE = "at+jwt"  # noqa: S105 - a JWT type, not a secret
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
Clock = Callable[[], float]

_KEY_FILE = re.compile(r"^key-(\d+)-[A-Za-z0-9_-]+\.pem$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _public_members(private_key: PrivateKey) -> tuple[str, dict[str, str]]:
    """(algorithm, required JWK members in RFC 7638 order) of the key's public half."""
    public = private_key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "EdDSA", {"crv": "Ed25519", "kty": "OKP", "x": _b64(raw)}
    if isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
        numbers = public.public_numbers()
        return "ES256", {
            "crv": "P-256",
            "kty": "EC",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
        }
    raise ValueError("signing keys must be Ed25519 or EC P-256")


def thumbprint(members: dict[str, str]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256) of a public key's required members."""
    canonical = json.dumps(dict(sorted(members.items())), separators=(",", ":"))
    return _b64(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class SigningKey:
    private_key: PrivateKey = field(repr=False, compare=False)
    # When this key may start signing (epoch seconds); None for keys from configuration,
    # whose order alone says which one signs.
    active_from: float | None = None
    algorithm: str = field(init=False)
    kid: str = field(init=False)
    public_jwk: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        algorithm, members = _public_members(self.private_key)
        kid = thumbprint(members)
        object.__setattr__(self, "algorithm", algorithm)
        object.__setattr__(self, "kid", kid)
        object.__setattr__(self, "public_jwk", {**members, "kid": kid, "use": "sig", "alg": algorithm})

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def generate_key(active_from: float | None = None, algorithm: str = "EdDSA") -> SigningKey:
    if algorithm == "EdDSA":
        return SigningKey(ed25519.Ed25519PrivateKey.generate(), active_from)
    if algorithm == "ES256":
        return SigningKey(ec.generate_private_key(ec.SECP256R1()), active_from)
    raise ValueError(f"unsupported signing algorithm {algorithm!r}")


def key_from_pem(pem: bytes, active_from: float | None = None) -> SigningKey:
    private_key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(private_key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("signing keys must be Ed25519 or EC P-256 private keys")
    return SigningKey(private_key, active_from)


def keys_from_config(value: str) -> list[SigningKey]:
    """``JWT_SIGNING_KEYS``: PEM texts or paths to PEM files, comma-separated, signing key first."""
    keys = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        if item.startswith("-----BEGIN"):
            pem = item.replace("\\n", "\n").encode()  # one-line env values often escape newlines
        else:
            try:
                pem = Path(item).expanduser().read_bytes()
            except OSError as exc:
                raise ValueError(f"JWT_SIGNING_KEYS: cannot read key file {item!r}: {exc.strerror}") from exc
        try:
            keys.append(key_from_pem(pem))
        except ValueError as exc:
            raise ValueError(f"JWT_SIGNING_KEYS: entry {len(keys) + 1} is not a usable key: {exc}") from exc
    if not keys:
        raise ValueError("JWT_SIGNING_KEYS names no key")
    return keys


class KeyRing:
    """Keys newest first. Says which key signs now and which public keys must be published.

    A scheduled key (``active_from`` set) signs from its ``active_from`` until a newer key
    becomes active, and stays published until ``token_lifetime`` after that. A key not yet
    active is published already. Keys without a schedule (configuration) are always published.
    """

    def __init__(self, keys: Sequence[SigningKey], token_lifetime: float, leeway: float = 60.0) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self.keys = list(keys)
        self.token_lifetime = token_lifetime
        self.leeway = leeway

    def _schedule(self, now: float) -> tuple[SigningKey, list[SigningKey], list[SigningKey]]:
        signing: SigningKey | None = None
        published: list[SigningKey] = []
        expired: list[SigningKey] = []
        superseded_at: float | None = None
        for key in self.keys:
            if key.active_from is not None and key.active_from > now:
                published.append(key)  # upcoming: verifiers learn it before it signs
            elif signing is None:
                signing = key
                published.append(key)
                superseded_at = key.active_from
            elif key.active_from is None or superseded_at is None:
                published.append(key)
            else:
                # Signed until ``superseded_at``; its last tokens expire a lifetime later.
                if superseded_at + self.token_lifetime + self.leeway > now:
                    published.append(key)
                else:
                    expired.append(key)
                superseded_at = key.active_from
        if signing is None:  # every key is in the future: sign with the earliest
            signing = min(self.keys, key=lambda k: k.active_from or 0.0)
        return signing, published, expired

    def signing_key(self, now: float) -> SigningKey:
        return self._schedule(now)[0]

    def published(self, now: float) -> list[SigningKey]:
        return self._schedule(now)[1]

    def expired(self, now: float) -> list[SigningKey]:
        return self._schedule(now)[2]

    def jwks(self, now: float) -> dict[str, Any]:
        return {"keys": [dict(key.public_jwk) for key in self.published(now)]}


class KeyDirectory:
    """A folder of ``key-<active_from>-<kid>.pem`` files (private keys, mode 0600)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def load(self) -> list[SigningKey]:
        """Keys newest first."""
        if not self.path.is_dir():
            return []
        keys = []
        for file in self.path.iterdir():
            match = _KEY_FILE.match(file.name)
            if match:
                keys.append(key_from_pem(file.read_bytes(), float(match.group(1))))
        return sorted(keys, key=lambda key: key.active_from or 0.0, reverse=True)

    def file_for(self, key: SigningKey) -> Path:
        return self.path / f"key-{int(key.active_from or 0)}-{key.kid}.pem"

    def add(self, key: SigningKey) -> Path:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = self.file_for(key)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key.private_pem())
        temp.replace(target)
        return target

    @contextlib.contextmanager
    def _locked(self) -> Any:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def ensure_key(self, algorithm: str = "EdDSA") -> list[SigningKey]:
        """The folder's keys, generating an immediately active one if it has none."""
        with self._locked():
            keys = self.load()
            if not keys:
                self.add(generate_key(active_from=0, algorithm=algorithm))
                keys = self.load()
            return keys

    def rotate(
        self,
        *,
        now: float,
        activation_delay: float,
        token_lifetime: float,
        algorithm: str = "EdDSA",
    ) -> tuple[SigningKey, list[SigningKey]]:
        """Add a key that signs from ``now + activation_delay``; delete keys whose tokens expired.

        Returns the new key and the deleted ones.
        """
        with self._locked():
            new = generate_key(active_from=int(now + activation_delay), algorithm=algorithm)
            self.add(new)
            ring = KeyRing(self.load(), token_lifetime)
            removed = ring.expired(now)
            for key in removed:
                self.file_for(key).unlink(missing_ok=True)
            return new, removed


class SigningKeyStore:
    """The current key ring; a key folder is re-read when it changes (another process rotated)."""

    def __init__(
        self,
        ring: KeyRing,
        directory: KeyDirectory | None = None,
        *,
        reload_interval: float = 2.0,
        clock: Clock = time.time,
    ) -> None:
        self._ring = ring
        self.directory = directory
        self.reload_interval = reload_interval
        self.clock = clock
        self._checked_at = time.monotonic()
        self._stamp = self._directory_stamp()
        self._published: tuple[KeyRing, int, frozenset[str]] | None = None

    @classmethod
    def from_config(
        cls,
        signing_keys: str | None,
        keys_dir: Path | str,
        *,
        token_lifetime: float,
        generate_if_missing: bool,
        clock: Clock = time.time,
    ) -> SigningKeyStore:
        if signing_keys and signing_keys.strip():
            return cls(KeyRing(keys_from_config(signing_keys), token_lifetime), clock=clock)
        directory = KeyDirectory(keys_dir)
        keys = directory.ensure_key() if generate_if_missing else directory.load()
        if not keys:
            raise RuntimeError(
                f"No signing key: set JWT_SIGNING_KEYS, or put keys in {directory.path} "
                "(`auth_service rotate-keys --activate-in 0` creates one)."
            )
        return cls(KeyRing(keys, token_lifetime), directory, clock=clock)

    def _directory_stamp(self) -> tuple[tuple[str, int], ...]:
        if self.directory is None or not self.directory.path.is_dir():
            return ()
        return tuple(sorted((f.name, f.stat().st_mtime_ns) for f in self.directory.path.glob("key-*.pem")))

    def reload(self) -> None:
        """Re-read the key folder now if its files changed."""
        self._checked_at = time.monotonic()
        if self.directory is None:
            return
        stamp = self._directory_stamp()
        if stamp != self._stamp:
            keys = self.directory.load()
            if keys:
                self._ring = KeyRing(keys, self._ring.token_lifetime, self._ring.leeway)
            self._stamp = stamp

    @property
    def ring(self) -> KeyRing:
        if self.directory is not None and time.monotonic() - self._checked_at >= self.reload_interval:
            self.reload()
        return self._ring

    def signing_key(self) -> SigningKey:
        return self.ring.signing_key(self.clock())

    def jwks(self) -> dict[str, Any]:
        return self.ring.jwks(self.clock())

    def published_kids(self) -> frozenset[str]:
        """The ``kid``s published now (recomputed at most once a second)."""
        ring, second = self.ring, int(self.clock())
        if self._published is None or self._published[0] is not ring or self._published[1] != second:
            kids = frozenset(key.kid for key in ring.published(second))
            self._published = (ring, second, kids)
        return self._published[2]

    def public_key(self, kid: str) -> jwt.PyJWK:
        """A published public key by ``kid``; ``KeyError`` when unknown."""
        for key in self.ring.published(self.clock()):
            if key.kid == kid:
                return jwt.PyJWK(dict(key.public_jwk))
        raise KeyError(kid)


class LocalKeySource:
    """A ``foundation.auth.keys.KeySource`` over the signer's own published keys (no HTTP)."""

    def __init__(self, store: SigningKeyStore) -> None:
        self.store = store
        self._parsed: dict[str, jwt.PyJWK] = {}

    async def key_for(self, kid: str) -> jwt.PyJWK:
        if kid not in self.store.published_kids():
            raise KeyError(kid)
        key = self._parsed.get(kid)
        if key is None:
            key = self._parsed[kid] = self.store.public_key(kid)
        return key


@dataclass(frozen=True)
class IssuedAccessToken:
    token: str
    token_id: str
    expires_at: int
    expires_in: int


class AccessTokenIssuer:
    """Signs RFC 9068-shaped access tokens: ``typ`` ``at+jwt``, ``kid``, standard claims."""

    def __init__(
        self,
        keys: SigningKeyStore,
        *,
        issuer: str,
        audience: str,
        lifetime: int = 900,
        clock: Clock = time.time,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
        self.clock = clock

    def issue(
        self,
        user_id: uuid.UUID,
        session_id: uuid.UUID,
        roles: Iterable[str] = (),
        *,
        auth_time: int | None = None,
        amr: Iterable[str] = (),
    ) -> IssuedAccessToken:
        """``auth_time`` (OpenID Connect's claim, epoch seconds): when the user last proved who
        they are (password, second factor, passkey or OAuth sign-in); refreshes keep the
        session's original one. ``amr`` (RFC 8176): how they proved it, e.g. ``["pwd"]`` or
        ``["pwd", "otp", "mfa"]``; left out when empty."""
        key = self.keys.signing_key()
        now = int(self.clock())
        token_id = uuid.uuid4().hex
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "sid": str(session_id),
            "roles": sorted(roles),
            "iat": now,
            "exp": now + self.lifetime,
            "jti": token_id,
        }
        if auth_time is not None:
            claims["auth_time"] = auth_time
        if amr:
            claims["amr"] = list(amr)
        token = jwt.encode(
            claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid, "typ": TOKEN_TYPE}
        )
        return IssuedAccessToken(token, token_id, now + self.lifetime, self.lifetime)
