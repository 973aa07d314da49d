"""/api/v2 sign-up, sign-in and sign-out: they set and clear the remember_me cookie."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..cookies import REMEMBER_ME, cookie_name
from ..db import accounts
from ..db.engine import Database
from ..db.errors import AccountExists, AuthError
from .http import HttpError, error, field, json_body

SESSION_MAX_AGE_S = 183 * 24 * 3600
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")

Endpoint = Callable[[Request], Awaitable[Response]]


def _endpoint(fn: Endpoint) -> Endpoint:
    async def run(request: Request) -> Response:
        try:
            return await fn(request)
        except HttpError as e:
            return error(e.message, e.status)

    return run


def routes(db: Database, prefix: str) -> list[BaseRoute]:
    cookie = cookie_name(prefix, REMEMBER_ME)

    def signed_in(account_id: str, token: str) -> JSONResponse:
        response = JSONResponse({"account_id": account_id})
        response.set_cookie(
            cookie,
            token,
            max_age=SESSION_MAX_AGE_S,
            path=prefix,
            httponly=True,
            samesite="strict",
            secure=False,
        )
        return response

    async def sign_up(request: Request) -> Response:
        body = await json_body(request)
        if body.get("terms") is not True:
            raise HttpError("you must accept the terms of service ('terms': true)")
        email = field(body, "email", max_length=254).strip().lower()
        if not _EMAIL.match(email):
            raise HttpError("'email' must be a valid email address")
        password = field(body, "password", max_length=1024)
        if not 8 <= len(password) <= 64:
            raise HttpError("'password' must be 8 to 64 characters long")
        first = field(body, "firstName", max_length=254, required=False).strip()
        last = field(body, "lastName", max_length=254, required=False).strip()
        try:
            account_id = await accounts.create_account(
                db, email=email, password=password, first_name=first, last_name=last
            )
        except AccountExists:
            raise HttpError(f"an account with the email {email} already exists; sign in") from None
        return signed_in(account_id, await accounts.create_session(db, account_id))

    async def sign_in(request: Request) -> Response:
        body = await json_body(request)
        email = field(body, "email", max_length=254)
        password = field(body, "password", max_length=1024)
        try:
            account_id = await accounts.authenticate(db, email, password)
        except AuthError as e:
            raise HttpError(str(e), 401) from None
        return signed_in(account_id, await accounts.create_session(db, account_id))

    async def sign_out(request: Request) -> Response:
        body = await json_body(request)
        token = request.cookies.get(cookie)
        account_id = await accounts.account_for_session(db, token) if token else None
        if account_id is None:
            raise HttpError("must be signed in", 401)
        if body.get("all") is True:
            await accounts.delete_all_sessions(db, account_id)
        else:
            await accounts.delete_session(db, token or "")
        response = JSONResponse({"status": "signed out"})
        response.delete_cookie(cookie, path=prefix, httponly=True, samesite="strict")
        return response

    api = prefix + "api/v2/"
    return [
        Route(api + "auth/sign-up", _endpoint(sign_up), methods=["POST"]),
        Route(api + "auth/sign-in", _endpoint(sign_in), methods=["POST"]),
        Route(api + "accounts/sign-out", _endpoint(sign_out), methods=["POST"]),
    ]
