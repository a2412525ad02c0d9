"""A passkey authenticator in software, for running the real WebAuthn ceremonies in tests.

It does what a platform authenticator and the browser's ``navigator.credentials`` do between
them, as the WebAuthn Level 3 specification lays the bytes out: a P-256 key pair per
credential; authenticator data (SHA-256 of the RP ID, flags, a signature counter, and on
registration the attested credential data with the COSE key); attestation ``none``; the
``clientDataJSON`` with the challenge and origin; ECDSA-SHA256 assertions over authenticator
data and the client data's hash. Its answers are ``PublicKeyCredential.toJSON()``'s shape, what
a web app sends to the server.

Our own rather than soft-webauthn: that package pins fido2 < 2, whose cryptography < 45 would
hold back the resolve's cryptography (and Authlib with it) for the sake of a test helper.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, AT = 0x01, 0x04, 0x40  # user present, user verified, attested credential data


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    rp_id: str
    user_handle: bytes
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    sign_count: int = 0

    def cose_public_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")},
            canonical=True,
        )


class SoftwareAuthenticator:
    """Holds credentials by RP; ``user_verifying``: whether it verifies the user (a PIN or
    biometric), as a passkey does, or only tests presence, as a plain security key does."""

    def __init__(self, *, user_verifying: bool = True) -> None:
        self.user_verifying = user_verifying
        self.credentials: list[Credential] = []

    def _flags(self, extra: int = 0) -> int:
        return UP | (UV if self.user_verifying else 0) | extra

    def create(self, options: dict[str, Any], origin: str) -> dict[str, Any]:
        """``navigator.credentials.create()`` with the server's registration options (JSON)."""
        if not any(p.get("alg") == -7 for p in options["pubKeyCredParams"]):
            raise ValueError("the server does not accept ES256")
        excluded = {d["id"] for d in options.get("excludeCredentials", [])}
        rp_id = options["rp"]["id"]
        if any(b64url(c.credential_id) in excluded and c.rp_id == rp_id for c in self.credentials):
            raise ValueError("InvalidStateError: this authenticator already holds a credential for the user")
        credential = Credential(rp_id=rp_id, user_handle=unb64url(options["user"]["id"]))
        self.credentials.append(credential)
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([self._flags(AT)])
            + struct.pack(">I", credential.sign_count)
            + bytes(16)  # AAGUID: none
            + struct.pack(">H", len(credential.credential_id))
            + credential.credential_id
            + credential.cose_public_key()
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(credential.credential_id),
            "rawId": b64url(credential.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
        }

    def get(
        self, options: dict[str, Any], origin: str, *, credential: Credential | None = None
    ) -> dict[str, Any]:
        """``navigator.credentials.get()`` with the server's assertion options (JSON)."""
        allowed = {d["id"] for d in options.get("allowCredentials", [])}
        candidates = [
            c
            for c in self.credentials
            if c.rp_id == options["rpId"] and (not allowed or b64url(c.credential_id) in allowed)
        ]
        chosen = credential or (candidates[0] if candidates else None)
        if chosen is None:
            raise ValueError("NotAllowedError: no credential for this RP")
        chosen.sign_count += 1
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        auth_data = (
            hashlib.sha256(chosen.rp_id.encode()).digest()
            + bytes([self._flags()])
            + struct.pack(">I", chosen.sign_count)
        )
        signature = chosen.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64url(chosen.credential_id),
            "rawId": b64url(chosen.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(chosen.user_handle),
            },
        }

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False},
            separators=(",", ":"),
        ).encode()
