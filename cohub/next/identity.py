"""Who is calling /api/v2: an API key (Authorization header) or the remember_me cookie.

An API key is sent as ``Authorization: Bearer <key>`` or as HTTP Basic with the key as the
user name and an empty password (``curl -u <key>:``). A request that presents an
Authorization header is judged by it alone: a bad key is "signed out" even when a valid
cookie is also sent.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

from ..db import accounts, api_keys
from ..db.engine import Database


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
    header = request.headers.get("authorization")
    if header is not None:
        key = key_from_authorization(header)
        found = await api_keys.account_or_project_for_api_key(db, key) if key else None
        return Who(found[0], found[1], "key") if found else None
    token = request.cookies.get(session_cookie)
    if token:
        account_id = await accounts.account_for_session(db, token)
        if account_id:
            return Who("account", account_id, "cookie")
    return None
