"""Database-layer exceptions. Messages are meant to be shown to a person, so they say what to do.

DBError
├── SchemaMismatch      the database revision is not the one this code expects
├── NotFound            no such account / project / ...
├── AccountExists       the email address is taken
├── AuthError           sign-in refused (wrong password, banned, ...)
└── PermissionDenied    the operation is not allowed (e.g. removing a project's owner)
"""

from __future__ import annotations


class DBError(Exception):
    """Base class for every error raised by cohub.db."""


class SchemaMismatch(DBError):
    """The database schema revision differs from the one this cohub was built for."""


class NotFound(DBError):
    """A row that the caller named does not exist."""


class AccountExists(DBError):
    """An account with this email address already exists."""


class AuthError(DBError):
    """Authentication failed; the message is safe to show to the user."""


class PermissionDenied(DBError):
    """The caller may not do this."""
