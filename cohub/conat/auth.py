"""Identity from handshake cookies, checked against the database (conat.md section 3).

First match wins: ``sys``, ``hub_password``, ``api_key``, ``project_secret`` with
``project_id``, then ``remember_me``. Every name but ``sys`` carries the base-path prefix.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from pathlib import Path

from ..cookies import cookie_name
from ..db import accounts, api_keys, projects
from ..db.engine import Database
from .errors import Unauthorized
from .identity import Identity


def load_or_create_secret(path: Path) -> str:
    """The hub's shared Conat secret; created (mode 0600) on first use."""
    if path.exists():
        secret = path.read_text().strip()
        if secret:
            return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(secret)
    tmp.replace(path)
    return secret


class CookieAuthenticator:
    """Callable turning handshake cookies into an Identity, or raising Unauthorized."""

    def __init__(
        self,
        db: Database,
        *,
        hub_password: str,
        base_path: str = "/",
        system_password: str | None = None,
    ) -> None:
        self._db = db
        self._hub_password = hub_password
        self._system_password = system_password
        self._names = {
            n: cookie_name(base_path, n)
            for n in ("hub_password", "api_key", "project_secret", "project_id", "remember_me")
        }

    async def __call__(self, cookies: Mapping[str, str]) -> Identity:
        names = self._names
        if "sys" in cookies:
            if self._system_password and hmac.compare_digest(cookies["sys"], self._system_password):
                return Identity("hub", "system", admin=True)
            raise Unauthorized("invalid system account password")
        if names["hub_password"] in cookies:
            if hmac.compare_digest(cookies[names["hub_password"]], self._hub_password):
                return Identity("hub", "hub", admin=True)
            raise Unauthorized("invalid hub password")
        if names["api_key"] in cookies:
            found = await api_keys.account_or_project_for_api_key(
                self._db, cookies[names["api_key"]]
            )
            if found is None:
                raise Unauthorized("api key no longer valid")
            kind, ident = found
            if kind == "project":
                return Identity("project", ident)
            return Identity("account", ident, admin=await accounts.is_admin(self._db, ident))
        if names["project_secret"] in cookies:
            project_id = cookies.get(names["project_id"])
            if not project_id:
                raise Unauthorized(f"must specify project_id in the cookie {names['project_id']}")
            if not await projects.project_for_secret(
                self._db, project_id, cookies[names["project_secret"]]
            ):
                raise Unauthorized("invalid secret token for project")
            return Identity("project", project_id)
        if names["remember_me"] in cookies:
            account_id = await accounts.account_for_session(self._db, cookies[names["remember_me"]])
            if account_id is None:
                raise Unauthorized("invalid or expired remember me cookie; sign in again")
            return Identity(
                "account", account_id, admin=await accounts.is_admin(self._db, account_id)
            )
        raise Unauthorized(
            "no auth cookie set; set one of 'hub_password', 'remember_me', 'api_key', "
            "'project_secret' or 'project_id'"
        )
