"""Who is on the other end of a Conat connection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["account", "project", "hub"]


@dataclass(frozen=True, slots=True)
class Identity:
    kind: Kind
    id: str  # account_id, project_id, or "hub" / "system" for hubs
    admin: bool = False

    @property
    def is_hub(self) -> bool:
        return self.kind == "hub"

    @property
    def user(self) -> dict[str, Any]:
        """The ``user`` object of the ``info`` event."""
        return {f"{self.kind}_id": self.id}

    @property
    def inbox_prefix(self) -> str:
        return f"_INBOX.{self.kind}-{self.id}"

    @property
    def key(self) -> str:
        """Stable key for per-user limits."""
        return f"{self.kind}-{self.id}"


def identity_from_user(user: dict[str, Any]) -> Identity | None:
    """The identity described by an ``info`` user object, or None for an error or unknown shape."""
    if not isinstance(user, dict) or "error" in user:
        return None
    for kind in ("account", "project", "hub"):
        value = user.get(f"{kind}_id")
        if isinstance(value, str) and value:
            return Identity(kind, value)  # type: ignore[arg-type]
    return None
