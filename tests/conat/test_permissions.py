"""The permission rules of conat.md section 3, and the decision cache."""

from __future__ import annotations

import uuid

import pytest

from cohub.conat.identity import Identity
from cohub.conat.permissions import NeedsCollaborator, Permissions, rule

A = str(uuid.uuid4())
B = str(uuid.uuid4())
P = str(uuid.uuid4())
account = Identity("account", A)
admin = Identity("account", A, admin=True)
project = Identity("project", P)
hub = Identity("hub", "hub")


@pytest.mark.parametrize(
    ("who", "action", "subject", "expected"),
    [
        (hub, "sub", ">", True),
        (hub, "pub", "anything.at.all", True),
        (account, "pub", f"hub.account.{A}.api", True),
        (account, "sub", f"hub.account.{A}.api", False),
        (account, "sub", f"hub.account.{A}.>", False),
        (account, "pub", f"hub.account.{B}.api", False),
        (account, "pub", f"hub.project.{P}.api", False),
        (account, "pub", "_INBOX.anyone.x", True),
        (account, "sub", "_INBOX.anyone.x", False),
        (account, "sub", f"_INBOX.account-{A}.abc.*", True),
        (account, "sub", f"_INBOX.account-{A}x.abc.*", False),
        (account, "sub", "public.svc", True),
        (account, "pub", "public.svc", False),
        (account, "sub", f"account.{A}.>", True),
        (account, "pub", f"account.{A}.x", True),
        (account, "sub", f"account.{B}.>", False),
        (account, "sub", "account.*.>", False),
        (account, "sub", f"services.account-{A}.x", True),
        (account, "sub", f"services.account-{B}.x", False),
        (account, "sub", "sys.conat.x", False),
        (admin, "sub", "sys.conat.x", True),
        (account, "sub", "project.*.>", False),
        (account, "sub", ">", False),
        (account, "pub", "foo", False),
        (project, "sub", f"project.{P}.>", True),
        (project, "pub", f"project.{P}.x", True),
        (project, "pub", f"hub.project.{P}.api", True),
        (project, "sub", f"hub.project.{P}.api", False),
        (project, "sub", f"_INBOX.project-{P}.x.*", True),
        (project, "sub", f"services.project-{P}.x", True),
        (project, "sub", f"project.{B}.>", False),
        (project, "sub", f"account.{A}.>", False),
        (project, "sub", "sys.x", False),
    ],
)
def test_rules(who: Identity, action: str, subject: str, expected: bool) -> None:
    assert rule(who, action, subject) is expected  # type: ignore[arg-type]


def test_collaborator_subjects_need_a_lookup() -> None:
    assert rule(account, "sub", f"project.{P}.>") == NeedsCollaborator(P)
    assert isinstance(rule(account, "pub", f"services.project-{P}.x"), NeedsCollaborator)
    assert rule(account, "sub", "project.not-a-uuid.>") is False


async def test_cache_and_forget() -> None:
    calls: list[tuple[str, str]] = []
    member = {P: False}

    async def is_collaborator(project_id: str, account_id: str) -> bool:
        calls.append((project_id, account_id))
        return member.get(project_id, False)

    perms = Permissions(is_collaborator, ttl=60)
    assert not await perms.allowed(account, "sub", f"project.{P}.>")
    member[P] = True
    assert not await perms.allowed(account, "sub", f"project.{P}.x")  # cached for the ttl
    assert len(calls) == 1
    perms.forget(P)
    assert await perms.allowed(account, "sub", f"project.{P}.>")
    assert len(calls) == 2


async def test_cache_expires_and_is_bounded() -> None:
    async def yes(project_id: str, account_id: str) -> bool:
        return True

    perms = Permissions(yes, ttl=0.0, max_entries=5)
    for _ in range(20):
        assert await perms.allowed(account, "sub", f"project.{uuid.uuid4()}.>")
    assert len(perms._cache) <= 5
