"""Who is calling /api/v2: an API key (Authorization header) or the remember_me cookie.

An API key is sent as ``Authorization: Bearer <key>`` or as HTTP Basic with the key as the
user name and an empty password (``curl -u <key>:``). A request that presents an
Authorization header is judged by it alone: a bad key is refused (401 "invalid or expired
API key") even when a valid cookie is also sent.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

from ..db import accounts, api_keys
from ..db.engine import Database
from .http import HttpError

INVALID_KEY = "invalid or expired API key"
BAD_AUTHORIZATION = (
    "the Authorization header must be 'Bearer <API key>' or Basic with the API key as the "
    "user name and an empty password"
)


@dataclass(frozen=True, slots=True)
class Who:
    kind: Literal["account", "project"]
    id: str
    via: Literal["key", "cookie"]


def key_from_authorization(header: str) -> str | None:
    """The API key in an Authorization header value (Bearer or Basic ``key:``), or None."""
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        user, _, _password = decoded.partition(":")
        return user or None
    return None


async def identify(db: Database, request: Request, session_cookie: str) -> Who | None:
    """The caller, or None without credentials; HttpError (401) for a key that is not valid."""
    header = request.headers.get("authorization")
    if header is not None:
        key = key_from_authorization(header)
        if not key:
            raise HttpError(BAD_AUTHORIZATION, 401)
        found = await api_keys.account_or_project_for_api_key(db, key)
        if not found:
            raise HttpError(INVALID_KEY, 401)
        return Who(found[0], found[1], "key")
    token = request.cookies.get(session_cookie)
    if token:
        account_id = await accounts.account_for_session(db, token)
        if account_id:
            return Who("account", account_id, "cookie")
    return None
