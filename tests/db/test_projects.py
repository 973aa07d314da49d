from __future__ import annotations

import pytest
import sqlalchemy as sa

from cohub.db import projects as pr
from cohub.db.accounts import create_account
from cohub.db.engine import Database
from cohub.db.errors import NotFound, PermissionDenied
from cohub.db.models import projects

MISSING = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
async def other_id(db: Database) -> str:
    return await create_account(db, email="other@example.com", password="pw123456")


async def test_create_and_list(db: Database, account_id: str) -> None:
    first = await pr.create_project(db, owner_id=account_id, title="First", description="d1")
    second = await pr.create_project(db, owner_id=account_id, title="Second")
    listed = await pr.list_projects(db, account_id)
    assert {p["project_id"] for p in listed} == {first, second}
    assert {(p["title"], p["description"], p["group"]) for p in listed} == {
        ("First", "d1", "owner"),
        ("Second", "", "owner"),
    }
    project = await pr.get_project(db, first)
    assert project is not None
    assert project["users"] == {account_id: "owner"}
    assert project["deleted"] is False
    assert "secret_token" not in project


async def test_create_project_for_unknown_owner(db: Database) -> None:
    with pytest.raises(NotFound):
        await pr.create_project(db, owner_id=MISSING, title="x")


async def test_deleted_projects_are_not_listed(db: Database, account_id: str) -> None:
    project_id = await pr.create_project(db, owner_id=account_id, title="gone")
    async with db.begin() as conn:
        await conn.execute(
            projects.update().where(projects.c.project_id == project_id).values(deleted=True)
        )
    assert await pr.list_projects(db, account_id) == []


async def test_groups(db: Database, account_id: str, other_id: str) -> None:
    project_id = await pr.create_project(db, owner_id=account_id, title="p")
    assert await pr.get_group(db, project_id, account_id) == "owner"
    assert await pr.get_group(db, project_id, other_id) is None
    assert not await pr.is_collaborator(db, project_id, other_id)

    await pr.add_collaborator(db, project_id, other_id, group="viewer")
    assert await pr.get_group(db, project_id, other_id) == "viewer"
    assert not await pr.is_collaborator(db, project_id, other_id)
    assert await pr.is_collaborator(db, project_id, account_id)
    assert [p["group"] for p in await pr.list_projects(db, other_id)] == ["viewer"]


async def test_add_collaborator(db: Database, account_id: str, other_id: str) -> None:
    project_id = await pr.create_project(db, owner_id=account_id, title="p")
    await pr.add_collaborator(db, project_id, other_id)
    await pr.add_collaborator(db, project_id, other_id)  # idempotent
    assert await pr.is_collaborator(db, project_id, other_id)
    await pr.add_collaborator(db, project_id, account_id)  # never demotes the owner
    assert await pr.get_group(db, project_id, account_id) == "owner"
    with pytest.raises(ValueError, match="group must be one of"):
        await pr.add_collaborator(db, project_id, other_id, group="admin")
    with pytest.raises(NotFound):
        await pr.add_collaborator(db, project_id, MISSING)
    with pytest.raises(NotFound):
        await pr.add_collaborator(db, MISSING, other_id)


async def test_remove_collaborator(db: Database, account_id: str, other_id: str) -> None:
    project_id = await pr.create_project(db, owner_id=account_id, title="p")
    await pr.add_collaborator(db, project_id, other_id)
    await pr.remove_collaborator(db, project_id, other_id)
    assert await pr.get_group(db, project_id, other_id) is None
    await pr.remove_collaborator(db, project_id, other_id)  # not on it: nothing to do
    with pytest.raises(PermissionDenied, match="owner of a project cannot be removed"):
        await pr.remove_collaborator(db, project_id, account_id)
    assert await pr.get_group(db, project_id, account_id) == "owner"


async def test_secret_token(db: Database, account_id: str) -> None:
    project_id = await pr.create_project(db, owner_id=account_id, title="p")
    assert not await pr.project_for_secret(db, project_id, "")
    assert not await pr.project_for_secret(db, project_id, "anything")

    await pr.set_secret_token(db, project_id, "s3cr3t-token")
    assert await pr.project_for_secret(db, project_id, "s3cr3t-token")
    assert not await pr.project_for_secret(db, project_id, "s3cr3t-tokeN")
    assert not await pr.project_for_secret(db, MISSING, "s3cr3t-token")

    async with db.begin() as conn:
        await conn.execute(
            sa.update(projects).where(projects.c.project_id == project_id).values(deleted=True)
        )
    assert not await pr.project_for_secret(db, project_id, "s3cr3t-token")

    await pr.set_secret_token(db, project_id, None)
    assert not await pr.project_for_secret(db, project_id, "s3cr3t-token")
    with pytest.raises(NotFound):
        await pr.set_secret_token(db, MISSING, "x")
