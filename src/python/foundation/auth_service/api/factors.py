"""``/auth/mfa/...`` and ``/auth/passkeys/...``: second factors and passkey sign-in.

Setting a factor up, removing it and new recovery codes need fresh authentication (as
deleting the account does); confirming an enrolment and registering the passkey whose options
were asked for need only the session that asked. ``SecondFactors`` is built by auth-service's
lifespan, which also hands it to the session service: its password sign-in asks it whether a
second step is due.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from foundation.auth.dependencies import CurrentPrincipal
from foundation.auth_service.api.accounts import FreshPrincipal
from foundation.auth_service.api.deps import Client, DbSession
from foundation.auth_service.api.schemas import TokenResponse
from foundation.auth_service.lifespan import State
from foundation.auth_service.repository import factors as factor_rows
from foundation.auth_service.services.factors import (
    InvalidMfaToken,
    InvalidPasskey,
    InvalidSecondFactor,
    SecondFactors,
)
from foundation.auth_service.services.sessions import TokenPair
from foundation.shared.errors import Conflict, NotFound, TooManyRequests, Unauthorized
from foundation.shared.lifespan import lifespan_state
from foundation.shared.logging import get_logger
from foundation.shared.openapi import SIGNED_IN, UNAVAILABLE, documented, raises

log = get_logger(__name__)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FRESH = raises(Unauthorized, "fresh_authentication_required")


router = APIRouter(prefix="/auth", tags=["second factors"])


async def get_factors(request: Request) -> SecondFactors:
    return lifespan_state(request, State)["second_factors"]


Factors = Annotated[SecondFactors, Depends(get_factors)]

Credential = Annotated[
    dict[str, Any],
    Field(
        description="The `PublicKeyCredential` from `navigator.credentials.create()` / `.get()`, "
        "as its `toJSON()` gives it (binary fields base64url)."
    ),
]
CODE = Field(default=None, pattern=r"^[0-9]{6}$", description="The authenticator app's current code.")
RECOVERY_CODE = Field(default=None, min_length=12, max_length=20, description="One of the recovery codes.")
MFA_TOKEN = Field(min_length=16, max_length=128, description="From the 403 `mfa_required` of the sign-in.")


def _tokens(pair: TokenPair, response: Response) -> TokenResponse:
    response.headers.update(NO_STORE)
    return TokenResponse(
        access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token
    )


# -- the second step of a sign-in --------------------------------------------------------


class VerifyRequest(BaseModel):
    # ``_one_factor`` below, as the schema says it.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": [name], "properties": {name: {"type": kind}}}
                for name, kind in (("code", "string"), ("recovery_code", "string"), ("credential", "object"))
            ]
        }
    )

    mfa_token: str = MFA_TOKEN
    code: str | None = CODE
    recovery_code: str | None = RECOVERY_CODE
    credential: Credential | None = None

    @model_validator(mode="after")
    def _one_factor(self) -> VerifyRequest:
        if sum(value is not None for value in (self.code, self.recovery_code, self.credential)) != 1:
            raise ValueError("send exactly one of code, recovery_code, credential")
        return self


class MfaTokenRequest(BaseModel):
    mfa_token: str = MFA_TOKEN


PASSKEY_OPTIONS = Field(
    description="For `navigator.credentials.get()` (`PublicKeyCredentialRequestOptions`, JSON)."
)


@router.post("/mfa/verify", response_model=TokenResponse)
@documented(
    raises(InvalidMfaToken),
    raises(InvalidSecondFactor),
    raises(InvalidPasskey),
    raises(TooManyRequests, "too_many_attempts"),
    UNAVAILABLE,
)
async def verify(body: VerifyRequest, factors: Factors, client: Client, response: Response) -> TokenResponse:
    """Finish a sign-in that answered 403 `mfa_required`: the `mfa_token` and one of `code`
    (the authenticator app), `recovery_code`, or `credential` (a passkey assertion made with
    the options of `POST /auth/mfa/passkey-options`). The same token pair as a sign-in; its
    access tokens' `amr` says which factors were used. 401 `invalid_second_factor`; 401
    `invalid_mfa_token` once the token is unknown, expired or out of attempts (5: sign in
    again); 429 `too_many_attempts` after 10 wrong factors for the account in 15 minutes."""
    if body.credential is not None:
        pair = await factors.verify_passkey_second_factor(body.mfa_token, body.credential, client)
    else:
        pair = await factors.verify_code(
            body.mfa_token, client, code=body.code, recovery_code=body.recovery_code
        )
    return _tokens(pair, response)


@router.post("/mfa/passkey-options")
@documented(raises(InvalidMfaToken), raises(InvalidSecondFactor), UNAVAILABLE)
async def passkey_options(body: MfaTokenRequest, factors: Factors, response: Response) -> dict[str, Any]:
    """Assertion options for the pending sign-in's passkeys (an attempt of the `mfa_token`).
    401 `invalid_second_factor` when the account has no passkey."""
    response.headers.update(NO_STORE)
    return await factors.second_factor_options(body.mfa_token)


# -- what the signed-in user has ---------------------------------------------------------


class PasskeyOut(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
    backed_up: bool = Field(description="Whether the passkey is synced (e.g. to the user's cloud keychain).")


class FactorsOut(BaseModel):
    totp: bool = Field(description="Whether an authenticator app is set up (and confirmed).")
    passkeys: list[PasskeyOut]
    recovery_codes_left: int


@router.get("/mfa", response_model=FactorsOut)
@documented(SIGNED_IN, UNAVAILABLE)
async def list_factors(principal: CurrentPrincipal, db: DbSession) -> FactorsOut:
    """The signed-in user's second factors."""
    totp = await factor_rows.totp(db, principal.user_id)
    passkeys = await factor_rows.passkeys(db, principal.user_id)
    return FactorsOut(
        totp=totp is not None and totp.confirmed_at is not None,
        passkeys=[_passkey_out(key) for key in passkeys],
        recovery_codes_left=await factor_rows.unused_recovery_codes(db, principal.user_id),
    )


def _passkey_out(key: Any) -> PasskeyOut:
    return PasskeyOut(
        id=key.id,
        name=key.name,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        backed_up=key.backed_up,
    )


# -- TOTP ----------------------------------------------------------------------------------


class TotpEnrolmentOut(BaseModel):
    secret: str = Field(description="Base32; shown once. Also inside `uri`.")
    uri: str = Field(description="`otpauth://totp/...`: show it as a QR code for the app to scan.")


class CodeRequest(BaseModel):
    code: str = Field(pattern=r"^[0-9]{6}$")


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str] | None = Field(
        description="Shown once: each signs in once instead of a second factor. Null when the "
        "account had a factor already (its codes stay as they were)."
    )


TOTP_OFF = raises(NotFound, "totp_not_configured")


@router.post("/mfa/totp", status_code=status.HTTP_201_CREATED, response_model=TotpEnrolmentOut)
@documented(
    SIGNED_IN,
    FRESH,
    raises(Conflict, "totp_already_enabled"),
    raises(NotFound, "user_not_found"),
    TOTP_OFF,
    UNAVAILABLE,
)
async def start_totp(
    principal: FreshPrincipal, db: DbSession, factors: Factors, response: Response
) -> TotpEnrolmentOut:
    """Start setting up an authenticator app: a new secret (replacing one not confirmed yet).
    It counts once `POST /auth/mfa/totp/confirm` has a first code. 409
    `totp_already_enabled`; needs a sign-in at most `FRESH_AUTH_MAX_AGE_SECONDS` old."""
    enrolment = await factors.start_totp(db, principal.user_id)
    response.headers.update(NO_STORE)
    return TotpEnrolmentOut(secret=enrolment.secret, uri=enrolment.uri)


@router.post("/mfa/totp/confirm", response_model=RecoveryCodesOut)
@documented(
    SIGNED_IN,
    raises(InvalidSecondFactor),
    raises(Conflict, "totp_not_pending"),
    raises(NotFound, "user_not_found"),
    TOTP_OFF,
    UNAVAILABLE,
)
async def confirm_totp(
    body: CodeRequest, principal: CurrentPrincipal, db: DbSession, factors: Factors, response: Response
) -> RecoveryCodesOut:
    """Confirm the authenticator app with its current code; from now on sign-ins ask for it.
    The first factor of an account comes with recovery codes. 401 `invalid_second_factor`;
    409 `totp_not_pending` when there is nothing to confirm."""
    codes = await factors.confirm_totp(db, principal.user_id, body.code)
    response.headers.update(NO_STORE)
    return RecoveryCodesOut(recovery_codes=codes)


@router.delete("/mfa/totp", status_code=status.HTTP_204_NO_CONTENT)
@documented(SIGNED_IN, FRESH, raises(NotFound, "totp_not_enabled"), UNAVAILABLE)
async def remove_totp(principal: FreshPrincipal, db: DbSession, factors: Factors) -> Response:
    """Remove the authenticator app (with the recovery codes, if no passkey is left)."""
    await factors.remove_totp(db, principal.user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/mfa/recovery-codes", response_model=RecoveryCodesOut)
@documented(SIGNED_IN, FRESH, raises(Conflict, "no_second_factor"), UNAVAILABLE)
async def replace_recovery_codes(
    principal: FreshPrincipal, db: DbSession, factors: Factors, response: Response
) -> RecoveryCodesOut:
    """New recovery codes; the old ones stop working. 409 `no_second_factor`."""
    codes = await factors.new_recovery_codes(db, principal.user_id)
    response.headers.update(NO_STORE)
    return RecoveryCodesOut(recovery_codes=codes)


# -- passkeys ------------------------------------------------------------------------------


class PasskeyRegistration(BaseModel):
    credential: Credential
    name: str = Field(default="Passkey", min_length=1, max_length=100)


class PasskeyRegistered(RecoveryCodesOut):
    passkey: PasskeyOut


class PasswordlessOptions(BaseModel):
    options: dict[str, Any] = PASSKEY_OPTIONS
    handle: str = Field(description="Send it back with the assertion; valid once, for a few minutes.")


class PasswordlessSignIn(BaseModel):
    handle: str = Field(min_length=16, max_length=128)
    credential: Credential


@router.post("/passkeys/registration-options")
@documented(SIGNED_IN, FRESH, raises(NotFound, "user_not_found"), UNAVAILABLE)
async def passkey_registration_options(
    principal: FreshPrincipal, db: DbSession, factors: Factors, response: Response
) -> dict[str, Any]:
    """Options for `navigator.credentials.create()` (`PublicKeyCredentialCreationOptions`,
    JSON): this RP, the user, ES256/EdDSA/RS256, a discoverable credential preferred, the
    passkeys the user has excluded. Valid for a few minutes."""
    response.headers.update(NO_STORE)
    return await factors.passkey_registration_options(db, principal.user_id)


@router.post("/passkeys", status_code=status.HTTP_201_CREATED, response_model=PasskeyRegistered)
@documented(
    SIGNED_IN,
    raises(InvalidPasskey),
    raises(Conflict, "passkey_exists"),
    raises(NotFound, "user_not_found"),
    UNAVAILABLE,
)
async def register_passkey(
    body: PasskeyRegistration, principal: CurrentPrincipal, db: DbSession, factors: Factors
) -> PasskeyRegistered:
    """Register the passkey made with the registration options: a second factor, and a way to
    sign in without a password. 400 `invalid_passkey` (wrong challenge, origin, RP, or a
    credential that does not verify); 409 `passkey_exists`."""
    row, codes = await factors.register_passkey(db, principal.user_id, body.credential, body.name)
    return PasskeyRegistered(passkey=_passkey_out(row), recovery_codes=codes)


@router.delete("/passkeys/{passkey_id:uuid}", status_code=status.HTTP_204_NO_CONTENT)
@documented(
    SIGNED_IN,
    FRESH,
    raises(NotFound, "passkey_not_found"),
    raises(Conflict, "last_sign_in_method"),
    UNAVAILABLE,
)
async def remove_passkey(
    passkey_id: uuid.UUID, principal: FreshPrincipal, db: DbSession, factors: Factors
) -> Response:
    """Remove a passkey. 409 `last_sign_in_method` when the account would have no way left to sign in."""
    await factors.remove_passkey(db, principal.user_id, passkey_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/passkeys/sign-in-options", response_model=PasswordlessOptions)
@documented(UNAVAILABLE)
async def passwordless_options(factors: Factors, response: Response) -> PasswordlessOptions:
    """Options for signing in with a passkey alone (user verification required; any of the
    RP's discoverable credentials), and the `handle` of this ceremony."""
    options, handle = await factors.passwordless_options()
    response.headers.update(NO_STORE)
    return PasswordlessOptions(options=options, handle=handle)


@router.post("/passkeys/sign-in", response_model=TokenResponse)
@documented(raises(InvalidPasskey), raises(Unauthorized, "account_disabled"), UNAVAILABLE)
async def passwordless_sign_in(
    body: PasswordlessSignIn, factors: Factors, client: Client, response: Response
) -> TokenResponse:
    """Sign in with a passkey: the same token pair as a password sign-in, `amr` `["hwk",
    "mfa"]`. 400 `invalid_passkey` (unknown credential, wrong challenge, no user
    verification, a replayed or cloned authenticator's counter)."""
    pair = await factors.passwordless_sign_in(body.handle, body.credential, client)
    return _tokens(pair, response)
