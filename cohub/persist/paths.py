"""Which storage paths a caller may use, and where their files live. No I/O.

The caller's scope is the second token of the request subject ``persist.<scope>...``: ``hub``,
``account-<id>`` or ``project-<id>``. The router only lets an account or project publish under
its own scope, so the subject proves who is asking. Hubs may use any path; an account may use
only paths under ``accounts/<its id>/`` and a project only under ``projects/<its id>/``.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from urllib.parse import unquote

from ..conat.errors import BadRequest, PermissionDenied

SERVICE = "persist"
MAX_PATH_LENGTH = 4000
_UUID_LENGTH = 36


def scope_of(subject: str) -> str:
    """The scope token of a ``persist.<scope>...`` subject."""
    tokens = subject.split(".")
    if len(tokens) < 2 or tokens[0] != SERVICE:
        raise BadRequest(f"not a persist subject: {subject!r}")
    return tokens[1]


def scope_for(kind: str, id: str) -> str:
    """The scope of an identity: ``hub`` or ``<kind>-<id>``."""
    return "hub" if kind == "hub" else f"{kind}-{id}"


def check_path(scope: str, path: object) -> str:
    """The path when ``scope`` may use it; BadRequest or PermissionDenied (403) otherwise."""
    if not isinstance(path, str):
        raise BadRequest(f"storage.path must be a string, not {type(path).__name__}")
    if not path:
        raise BadRequest("storage.path must not be empty")
    if len(path) > MAX_PATH_LENGTH:
        raise PermissionDenied(
            f"permission denied: path (of length {len(path)}) is too long "
            f"(limit is {MAX_PATH_LENGTH} characters)"
        )
    if any(ord(c) < 32 or c == "\x7f" for c in path):
        raise PermissionDenied("permission denied: path contains control characters")
    if path.startswith("/") or path.endswith("/"):
        raise PermissionDenied(f"permission denied: path '{path}' must not start or end with '/'")
    for candidate in (path, unquote(path)):
        # a percent-encoded '..' is refused too, in case anything downstream decodes it
        if candidate != posixpath.normpath(candidate) or ".." in candidate.split("/"):
            raise PermissionDenied(f"permission denied: path '{path}' is not normalized")
        if "\\" in candidate:
            raise PermissionDenied(f"permission denied: path '{path}' contains a backslash")
    if scope == "hub":
        return path
    for kind in ("account", "project"):
        if scope.startswith(kind + "-"):
            owner = scope[len(kind) + 1 :]
            base = f"{kind}s/{owner}/"
            if len(owner) != _UUID_LENGTH or not path.startswith(base) or path == base:
                raise PermissionDenied(
                    f"permission denied: scope '{scope}' may not use path '{path}': "
                    f"it is not under '{base}'"
                )
            return path
    raise PermissionDenied(f"permission denied: invalid persist scope '{scope}'")


def file_for(sync_dir: Path, path: str) -> Path:
    """The SQLite file of a checked path; PermissionDenied if a symlink leads outside."""
    root = sync_dir.resolve()
    file = root / f"{path}.db"
    resolved = file.resolve()
    if not resolved.is_relative_to(root):
        raise PermissionDenied(f"permission denied: path '{path}' leads outside the sync dir")
    return file
