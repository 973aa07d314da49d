"""Who may publish or subscribe where (conat.md section 3).

``rule`` is the pure decision table. ``Permissions`` adds the one database question (is
this account a collaborator of that project?) and caches decisions for at most ``ttl``
seconds, so a collaborator change takes effect within that window.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Literal

from ..ids import is_uuid
from .identity import Identity
from .protocol import PERMISSION_CACHE_S

Action = Literal["pub", "sub"]
IsCollaborator = Callable[[str, str], Awaitable[bool]]


class NeedsCollaborator(str):
    """A rule outcome: allowed only if the account collaborates on this project id."""


def rule(identity: Identity, action: Action, subject: str) -> bool | NeedsCollaborator:
    """The decision for one identity, action and subject (or pattern)."""
    if identity.is_hub:
        return True
    tokens = subject.split(".")
    kind, own = identity.kind, identity.id
    if len(tokens) >= 4 and tokens[0] == "hub" and tokens[1] == kind and tokens[2] == own:
        return action == "pub"  # the hub API subject: the caller may only publish there
    if action == "pub" and tokens[0] == "_INBOX" and len(tokens) > 1:
        return True
    if action == "sub":
        if tokens[0] == "_INBOX" and len(tokens) > 1 and tokens[1] == f"{kind}-{own}":
            return True
        if tokens[0] == "public" and len(tokens) > 1:
            return True
    second = tokens[1] if len(tokens) > 1 else ""
    if len(tokens) >= 3 and tokens[0] == kind and tokens[1] == own:
        return True
    if second == f"{kind}-{own}":
        return True
    if kind != "account":
        return False
    if tokens[0] == "sys" and len(tokens) > 1:
        return identity.admin
    if tokens[0] == "project" and len(tokens) >= 3 and is_uuid(second):
        return NeedsCollaborator(second)
    if second.startswith("project-") and is_uuid(second[8:]):
        return NeedsCollaborator(second[8:])
    return False


class Permissions:
    """Decisions with a bounded, time-limited cache."""

    def __init__(
        self,
        is_collaborator: IsCollaborator,
        ttl: float = PERMISSION_CACHE_S,
        max_entries: int = 10_000,
    ) -> None:
        self._is_collaborator = is_collaborator
        self._ttl = ttl
        self._max = max_entries
        self._cache: OrderedDict[tuple[str, str, str], tuple[float, bool]] = OrderedDict()
        # outcomes of the pure rule table, which never change for an identity and subject
        self._rules: dict[tuple[Identity, Action, str], bool | NeedsCollaborator] = {}

    async def allowed(self, identity: Identity, action: Action, subject: str) -> bool:
        rule_key = (identity, action, subject)
        outcome = self._rules.get(rule_key)
        if outcome is None:
            outcome = rule(identity, action, subject)
            if len(self._rules) >= self._max:
                self._rules.clear()  # pure and cheap to recompute: no need for LRU order
            self._rules[rule_key] = outcome
        if not isinstance(outcome, NeedsCollaborator):
            return outcome
        key = (identity.id, "collab", str(outcome))
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self._ttl:
            self._cache.move_to_end(key)
            return hit[1]
        decision = await self._is_collaborator(str(outcome), identity.id)
        self._cache[key] = (now, decision)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return decision

    def forget(self, project_id: str | None = None) -> None:
        """Drop cached decisions (for one project, or all) after a collaborator change."""
        if project_id is None:
            self._cache.clear()
            return
        for key in [k for k in self._cache if k[2] == project_id]:
            del self._cache[key]
