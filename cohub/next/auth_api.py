"""/api/v2 sign-up, sign-in, sign-out and password reset; they set and clear remember_me.

The remember_me cookie holds a random session token; the database keeps only its sha256 with
an expiry six months ahead. The cookie is httpOnly and SameSite=strict, and its name carries
the base path when that is not ``/``.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import JSONResponse, Response

from ..config import Settings
from ..db import accounts, throttle
from ..db import settings as site_settings
from ..db.engine import Database
from ..db.errors import AccountExists, AuthError
from ..mail import MailError, send_email, smtp_settings
from .http import NOT_SIGNED_IN, HttpError, field
from .spec import BOOL, STRING, UUID, Call, Operation, obj

log = logging.getLogger("cohub.next.auth")

SESSION_MAX_AGE_S = int(accounts.SESSION_TTL.total_seconds())
# local@domain.tld. The local part: RFC 5322 dot-atoms (no leading, trailing or double dot),
# Unicode letters allowed (RFC 6531), but none of the specials <>()[]\,;:@" nor ` (no quoted
# local parts: nobody needs them, and they are how markup gets in). The apostrophe stays, as in
# o'neil@example.com. The domain: at least two labels of letters and digits with inner hyphens.
_LOCAL_ATOM = r"[^\s@<>()\[\]\\,;:\"`.]+"
_LABEL = r"[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?"
_EMAIL = re.compile(
    rf"(?=[^@]{{1,64}}@){_LOCAL_ATOM}(?:\.{_LOCAL_ATOM})*@(?:{_LABEL}\.)+{_LABEL}",
    re.UNICODE,
)
ACCOUNT = obj({"account_id": UUID}, ("account_id",))
# Unicode categories no email address may contain: controls, format characters (bidi
# overrides, zero-width joiners, ...), surrogates, private use, unassigned, and separators.
_NOT_IN_EMAIL = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
# Explicit bidi formatting characters (a subset of Cf) and line/paragraph separators, which
# would let a name reorder or break the text around it wherever it is shown.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

Publish = Callable[[dict[str, Any]], Awaitable[None]]
"""Tell the routers that access was taken away (PERMISSIONS_CHANGED), e.g. after sign-out."""


def _printable_email(email: str) -> bool:
    return not any(unicodedata.category(c) in _NOT_IN_EMAIL for c in email)


def email_field(body: dict[str, Any], name: str = "email") -> str:
    """A trimmed, lower-cased email address: printable, no whitespace, controls or format
    characters, and of the form local@domain.tld."""
    email = field(body, name, max_length=254).strip().lower()
    if not _printable_email(email):
        raise HttpError(
            f"'{name}' must be a valid email address: it contains whitespace, control or "
            "invisible formatting characters"
        )
    if not _EMAIL.fullmatch(email):
        raise HttpError(f"'{name}' must be a valid email address")
    return email


def name_field(body: dict[str, Any], name: str) -> str:
    """A trimmed first or last name without control or bidi formatting characters."""
    value = field(body, name, max_length=254, required=False).strip()
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in _BIDI for c in value):
        raise HttpError(
            f"'{name}' must not contain control characters, line breaks or bidi formatting "
            "characters"
        )
    return value


def _client_ip(call: Call) -> str:
    # The socket peer. X-Forwarded-For is not trusted: anyone could set it to dodge the
    # per-IP limit. (Behind an ingress every request has the ingress's address, so the
    # per-email limit is what protects accounts there.)
    return call.request.client.host if call.request.client else "unknown"


async def _no_publish(data: dict[str, Any]) -> None:
    return None


def operations(
    db: Database, settings: Settings, session_cookie: str, publish: Publish = _no_publish
) -> list[Operation]:
    prefix = settings.prefix

    def signed_in(account_id: str, token: str) -> JSONResponse:
        response = JSONResponse({"account_id": account_id})
        response.set_cookie(
            session_cookie,
            token,
            max_age=SESSION_MAX_AGE_S,
            path=prefix,
            httponly=True,
            samesite="strict",
            secure=settings.site_url.startswith("https://"),
        )
        return response

    async def sign_up(call: Call) -> Response:
        body = call.body
        if body.get("terms") is not True:
            raise HttpError("you must accept the terms of service ('terms': true)")
        email = email_field(body)
        password = field(body, "password", max_length=1024)
        try:
            accounts.check_new_password(password)
        except ValueError:
            raise HttpError("'password' must be 8 to 64 characters long") from None
        first = name_field(body, "firstName")
        last = name_field(body, "lastName")
        token = field(body, "registrationToken", max_length=255, required=False).strip()
        if not token.isprintable():
            raise HttpError("'registrationToken' must not contain control characters")
        if not await site_settings.sign_up_enabled(db):
            raise HttpError(
                "sign-up is disabled on this server; ask the site administrator for an account",
                403,
            )
        required = await site_settings.token_required(db)
        if required and not token:
            raise HttpError(
                "sign-up on this server requires a registration token ('registrationToken')",
                403,
            )
        try:
            account_id = await accounts.create_account(
                db,
                email=email,
                password=password,
                first_name=first,
                last_name=last,
                registration_token=token if required else None,
            )
        except AccountExists:
            raise HttpError(f"an account with the email {email} already exists; sign in") from None
        except site_settings.RegistrationTokenError as e:
            raise HttpError(str(e), 403) from None
        return signed_in(account_id, await accounts.create_session(db, account_id))

    async def sign_in(call: Call) -> Response:
        email = field(call.body, "email", max_length=254).strip().lower()
        if not _printable_email(email):
            # No account has such an address, and PostgreSQL refuses NUL in text.
            raise HttpError(
                "'email' must be a valid email address: it contains whitespace, control or "
                "invisible formatting characters"
            )
        password = field(call.body, "password", max_length=1024)
        ip = _client_ip(call)
        # Counted as a failure before the password is checked, and taken back if it is right:
        # concurrent guesses cannot all slip through a check made before any was recorded.
        try:
            attempt = await throttle.attempt(
                db,
                throttle.Key("email", email, throttle.SIGN_IN_EMAIL, "email address"),
                throttle.Key("ip", ip, throttle.SIGN_IN_IP, "IP address"),
            )
        except throttle.TooManyAttempts as e:
            raise HttpError(f"too many sign-in attempts: {e}", 429) from None
        try:
            account_id = await accounts.authenticate(db, email, password)
        except AuthError as e:
            raise HttpError(str(e), 401) from None
        await throttle.forget(db, attempt)
        return signed_in(account_id, await accounts.create_session(db, account_id))

    async def sign_out(call: Call) -> Response:
        if call.who is None or call.who.kind != "account":
            raise HttpError(NOT_SIGNED_IN, 401)
        if call.body.get("all") is True:
            await accounts.delete_all_sessions(db, call.who.id)
        else:
            token = call.request.cookies.get(session_cookie)
            if token:
                await accounts.delete_session(db, token)
        await publish({"account_id": call.who.id})
        response = JSONResponse({"status": "ok"})
        response.delete_cookie(session_cookie, path=prefix, httponly=True, samesite="strict")
        return response

    async def password_reset(call: Call) -> dict[str, Any]:
        email = email_field(call.body)
        smtp = await smtp_settings(db, settings)
        if smtp is None:
            raise HttpError(
                "email is not configured on this server, so no reset email can be sent; "
                "ask the site administrator",
                503,
            )
        ip = _client_ip(call)
        try:  # every request counts, so nothing is taken back
            await throttle.attempt(
                db,
                throttle.Key("reset-email", email, throttle.PASSWORD_RESET_EMAIL, "email address"),
                throttle.Key("reset-ip", ip, throttle.PASSWORD_RESET_IP, "IP address"),
            )
        except throttle.TooManyAttempts as e:
            raise HttpError(f"too many password reset requests: {e}", 429) from None
        created = await accounts.create_password_reset(db, email)
        if created is not None:
            _, token = created
            link = f"{settings.site_url}auth/password-reset#{token}"
            ttl_min = int(accounts.PASSWORD_RESET_TTL.total_seconds() // 60)
            body = (
                "Someone (hopefully you) asked to reset the password of your account.\n\n"
                f"Reset it here within {ttl_min} minutes: {link}\n"
                f"Or send the code {token} to /api/v2/auth/redeem-password-reset.\n\n"
                "If you did not ask for this, ignore this email.\n"
            )
            try:
                await send_email(smtp, email, "Password reset", body)
            except MailError as e:
                raise HttpError(str(e), 503) from None
        # The same answer whether or not the account exists.
        return {
            "success": f"if an account with {email} exists, an email with a reset link is on "
            "its way"
        }

    async def redeem_password_reset(call: Call) -> Response:
        token = field(call.body, "passwordResetId", max_length=300)
        password = field(call.body, "password", max_length=1024)
        try:
            accounts.check_new_password(password)
            account_id = await accounts.redeem_password_reset(db, token, password)
        except ValueError:
            raise HttpError("'password' must be 8 to 64 characters long") from None
        except AuthError as e:
            raise HttpError(str(e), 400) from None
        await publish({"account_id": account_id})  # every session of the account ended
        return signed_in(account_id, await accounts.create_session(db, account_id))

    api = "api/v2/"
    credentials = {"email": STRING, "password": STRING}
    return [
        Operation(
            api + "auth/sign-up",
            "signUp",
            f"Create an account and sign in (sets the {session_cookie} cookie)",
            "Auth",
            sign_up,
            auth="none",
            request=obj(
                {
                    **credentials,
                    "firstName": STRING,
                    "lastName": STRING,
                    "terms": BOOL,
                    "registrationToken": STRING,
                },
                ("email", "password", "terms"),
            ),
            response=ACCOUNT,
            errors=(403,),
            description="The email is trimmed and lower-cased; passwords are 8-64 characters; "
            "'terms' must be true. Sign-up can be disabled (site setting email_signup=no) or "
            "need a registration token.",
        ),
        Operation(
            api + "auth/sign-in",
            "signIn",
            f"Sign in with email and password (sets the {session_cookie} cookie)",
            "Auth",
            sign_in,
            auth="none",
            request=obj(credentials, ("email", "password")),
            response=ACCOUNT,
            errors=(401, 429),
            description="Failures are throttled: more than 5 a minute or 50 an hour per email, "
            "or 30 a minute or 200 an hour per IP address, get 429.",
        ),
        Operation(
            api + "accounts/sign-out",
            "signOut",
            "Sign out: end this session, or every session with all=true",
            "Auth",
            sign_out,
            request=obj({"all": BOOL}),
            response={
                "type": "object",
                "required": ["status"],
                "properties": {"status": {"type": "string"}},
            },
        ),
        Operation(
            api + "auth/password-reset",
            "passwordReset",
            "Email a one-time password reset link",
            "Auth",
            password_reset,
            auth="none",
            request=obj({"email": STRING}, ("email",)),
            response=obj({"success": STRING}, ("success",)),
            errors=(429,),
        ),
        Operation(
            api + "auth/redeem-password-reset",
            "redeemPasswordReset",
            "Set a new password with the emailed code and sign in; the code is used up",
            "Auth",
            redeem_password_reset,
            auth="none",
            request=obj({"passwordResetId": STRING, "password": STRING}),
            response=ACCOUNT,
        ),
    ]
