"""system.*, messages.* and the dispatcher."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cohub.db import api_keys, projects
from cohub.db import settings as site_settings
from cohub.hub import api
from cohub.hub.context import ApiError, Caller, Context

pytestmark = pytest.mark.asyncio


async def test_ping_test_and_customize(hub, make_account) -> None:
    me = await make_account("me")
    assert isinstance((await hub.call(me, "system.ping"))["now"], int)
    assert (await hub.call(me, "system.test"))["account_id"] == me
    await site_settings.set_setting(hub.db, "site_name", "Mine")
    await site_settings.set_setting(hub.db, "email_smtp_password", "secret!")
    custom = await hub.call(me, "system.getCustomize")
    assert custom["site_name"] == "Mine" and "secret!" not in str(custom)
    assert await hub.call(me, "system.getCustomize", ["site_name", "nope"]) == {"site_name": "Mine"}


async def test_manage_api_keys(hub, make_account) -> None:
    me = await make_account("me")
    other = await make_account("other")
    created = await hub.call(me, "system.manageApiKeys", {"action": "create", "name": "ci"})
    key = created[0]["secret"]
    assert key.startswith("sk-") and created[0]["trunc"] == f"sk-…{key[-6:]}"
    key_id = created[0]["id"]
    listed = await hub.call(me, "system.manageApiKeys", {"action": "get"})
    assert [k["id"] for k in listed] == [key_id] and "secret" not in listed[0]
    assert "hash" not in listed[0]
    # someone else cannot see, edit or delete it
    assert await hub.call(other, "system.manageApiKeys", {"action": "get"}) == []
    e = await hub.error(other, "system.manageApiKeys", {"action": "delete", "id": key_id})
    assert e.code == 404
    e = await hub.error(
        other, "system.manageApiKeys", {"action": "edit", "id": key_id, "name": "x"}
    )
    assert e.code == 404
    soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    await hub.call(
        me, "system.manageApiKeys", {"action": "edit", "id": key_id, "name": "ci2", "expire": soon}
    )
    (edited,) = await hub.call(me, "system.manageApiKeys", {"action": "get", "id": key_id})
    assert edited["name"] == "ci2" and edited["expire"].startswith(soon[:16])
    assert await api_keys.account_or_project_for_api_key(hub.db, key) == ("account", me)
    await hub.call(me, "system.manageApiKeys", {"action": "delete", "id": key_id})
    assert await api_keys.account_or_project_for_api_key(hub.db, key) is None  # revoked
    for bad in (
        {"action": "steal"},
        {"action": "create", "expire": "yesterday"},
        {"action": "create", "expire": (datetime.now(UTC) - timedelta(days=1)).isoformat()},
        {"action": "create", "name": "x" * 300},
        {"action": "delete"},
        {"action": "edit", "id": "1"},
    ):
        assert (await hub.error(me, "system.manageApiKeys", bad)).code == 400, bad


async def test_api_key_revocations_are_announced(hub, make_account) -> None:
    from cohub.conat.protocol import PERMISSIONS_CHANGED

    me = await make_account("me")
    mine = {"account_id": me}

    async def key(**opts: object) -> int:
        created = await hub.call(me, "system.manageApiKeys", {"action": "create", **opts})
        return int(created[0]["id"])

    key_id = await key(name="a")
    assert hub.notified == []  # creating takes nothing away
    await hub.call(me, "system.manageApiKeys", {"action": "edit", "id": key_id, "name": "b"})
    assert hub.notified == []  # nor does a new name
    soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    await hub.call(me, "system.manageApiKeys", {"action": "edit", "id": key_id, "expire": soon})
    assert hub.notified == [(PERMISSIONS_CHANGED, mine)]
    await hub.call(me, "system.manageApiKeys", {"action": "edit", "id": key_id, "expire": None})
    assert hub.notified[-1] == (PERMISSIONS_CHANGED, mine) and len(hub.notified) == 2
    await hub.call(me, "system.manageApiKeys", {"action": "delete", "id": key_id})
    assert hub.notified[-1] == (PERMISSIONS_CHANGED, mine) and len(hub.notified) == 3
    # a failed delete announces nothing
    await hub.error(me, "system.manageApiKeys", {"action": "delete", "id": key_id})
    assert len(hub.notified) == 3
    # a project key: the project's connections are re-checked too
    pid = await hub.call(me, "projects.createProject", {"title": "p"})
    project_key = await key(project_id=pid)
    hub.notified.clear()
    await hub.call(
        me, "system.manageApiKeys", {"action": "delete", "id": project_key, "project_id": pid}
    )
    assert hub.notified == [
        (PERMISSIONS_CHANGED, mine),
        (PERMISSIONS_CHANGED, {"project_id": pid}),
    ]


async def test_project_keys_need_a_collaborator(hub, make_account) -> None:
    owner = await make_account("owner")
    viewer = await make_account("viewer")
    pid = await hub.call(owner, "projects.createProject", {"title": "p"})
    await projects.add_collaborator(hub.db, pid, viewer, group="viewer")
    e = await hub.error(viewer, "system.manageApiKeys", {"action": "create", "project_id": pid})
    assert e.code == 403
    (made,) = await hub.call(owner, "system.manageApiKeys", {"action": "create", "project_id": pid})
    assert await api_keys.account_or_project_for_api_key(hub.db, made["secret"]) == ("project", pid)
    # a project key manages nothing: it is not an account
    e = await hub.error(pid, "system.manageApiKeys", {"action": "get"}, kind="project")
    assert e.code == 403


async def test_user_search_and_names(hub, make_account) -> None:
    me = await make_account("me")
    ann = await make_account("annabel")
    admin = await make_account("admin", groups=["admin"])
    found = await hub.call(me, "system.userSearch", {"query": "anna"})
    assert [f["account_id"] for f in found] == [ann]
    assert "email_address" not in found[0]  # not shown for a name match
    exact = await hub.call(me, "system.userSearch", {"query": "ANNABEL2@example.com"})
    assert exact[0]["account_id"] == ann and exact[0]["email_address"] == "annabel2@example.com"
    assert await hub.call(me, "system.userSearch", {"query": "annabel2@"}) == []
    partial = await hub.call(admin, "system.userSearch", {"query": "annabel2@", "admin": True})
    assert partial[0]["email_address"] == "annabel2@example.com"
    assert await hub.call(me, "system.userSearch", {"query": "%"}) == []
    names = await hub.call(me, "system.getNames", [ann, me])
    assert names[ann] == {"first_name": "Annabel", "last_name": "N2"}
    for bad in ([["nope"]], [None], [["*"] * 2], [[ann] * 1001]):
        assert (await hub.error(me, "system.getNames", *bad)).code == 400


async def test_messages(hub, make_account) -> None:
    alice = await make_account("alice")
    bob = await make_account("bob")
    mid = await hub.call(alice, "messages.send", {"to_ids": [bob], "subject": "hi", "body": "yo"})
    reply = await hub.call(
        bob,
        "messages.send",
        {"to_ids": ["alice1@example.com"], "subject": "re", "body": "hey", "reply_id": mid},
    )
    got = await hub.call(bob, "messages.get")
    assert [m["id"] for m in got] == [mid] and got[0]["from_id"] == alice
    assert got[0]["to_ids"] == [bob] and isinstance(got[0]["sent"], str)
    assert [m["id"] for m in await hub.call(bob, "messages.get", {"type": "sent"})] == [reply]
    assert [m["id"] for m in await hub.call(alice, "messages.get", {"type": "new"})] == [reply]
    stranger = await make_account("eve")
    e = await hub.error(
        stranger, "messages.send", {"to_ids": [bob], "subject": "x", "reply_id": mid}
    )
    assert e.code == 404
    for bad in (
        {"to_ids": [], "subject": "x"},
        {"to_ids": "bob", "subject": "x"},
        {"to_ids": [bob]},
        {"to_ids": [bob], "subject": "x" * 2000},
    ):
        assert (await hub.error(alice, "messages.send", bad)).code == 400
    e = await hub.error(alice, "messages.send", {"to_ids": ["nobody@example.com"], "subject": "x"})
    assert e.code == 404
    assert (await hub.error(alice, "messages.get", {"type": "all"})).code == 400


async def test_dispatcher_replies_error_and_code(hub, make_account, db) -> None:
    from cohub.conat.codec import Message, encode
    from cohub.conat.protocol import Encoding

    me = await make_account("me")

    def msg(subject: str, data: object) -> Message:
        return Message(subject, encode(data, Encoding.JSON), Encoding.JSON)

    subject = f"hub.account.{me}.api"
    assert await api.handle(db, msg(subject, {"name": "nope.x"})) == {
        "error": "unknown function 'nope.x'",
        "code": 404,
    }
    assert (await api.handle(db, msg(subject, {"name": "system.ping", "args": "x"})))["code"] == 400
    assert (await api.handle(db, msg(subject, ["system.test", []])))["account_id"] == me
    assert (await api.handle(db, msg("hub.account.*.api", {"name": "system.ping"})))["error"]
    with pytest.raises(ApiError):
        await api.call(Context(db, Caller("account", me)), "system.ping", [1] * 11)


async def test_ban_user_is_for_admins_and_checks_its_arguments(hub, make_account) -> None:
    from cohub.conat.protocol import PERMISSIONS_CHANGED
    from cohub.db import accounts

    admin = await make_account("admin", groups=["admin"])
    me = await make_account("me")
    other = await make_account("other")
    session = await accounts.create_session(hub.db, other)
    e = await hub.error(me, "system.banUser", {"account_id": other})
    assert e.code == 403 and "only admins" in e.message
    e = await hub.error(other, "system.banUser", {"account_id": other}, kind="project")
    assert e.code == 403
    for bad in ({}, {"account_id": "x"}, {"account_id": other, "banned": "yes"}):
        assert (await hub.error(admin, "system.banUser", bad)).code == 400, bad
    e = await hub.error(
        admin, "system.banUser", {"account_id": "0" * 8 + "-0000-4000-8000-" + "0" * 12}
    )
    assert e.code == 404
    assert (await hub.error(admin, "system.banUser", {"account_id": admin})).code == 400
    assert hub.notified == []
    assert await hub.call(admin, "system.banUser", {"account_id": other}) is None
    assert (await accounts.get_account(hub.db, other))["banned"]
    assert await accounts.account_for_session(hub.db, session) is None
    assert hub.notified == [(PERMISSIONS_CHANGED, {"account_id": other})]
    assert (await hub.error(other, "system.test")).code == 401
    await hub.call(admin, "system.banUser", {"account_id": other, "banned": False})
    assert not (await accounts.get_account(hub.db, other))["banned"]
    assert (await hub.call(other, "system.test"))["account_id"] == other
