"""Projects and their collaborators (the normalized project_users table)."""

from __future__ import annotations

import hmac
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cohub.db.engine import Database
from cohub.db.errors import NotFound, PermissionDenied
from cohub.db.models import COLLABORATOR_GROUPS, accounts, project_users, projects


def _now() -> datetime:
    return datetime.now(UTC)


async def create_project(db: Database, *, owner_id: str, title: str, description: str = "") -> str:
    """Create a project owned by ``owner_id`` and return its id."""
    project_id = str(uuid.uuid4())
    now = _now()
    async with db.begin() as conn:
        await _require_account(conn, owner_id)
        await conn.execute(
            projects.insert().values(
                project_id=project_id,
                title=title,
                description=description,
                created=now,
                last_edited=now,
            )
        )
        await conn.execute(
            project_users.insert().values(project_id=project_id, account_id=owner_id, group="owner")
        )
    return project_id


async def _require_account(conn: AsyncConnection, account_id: str) -> None:
    found = await conn.scalar(
        sa.select(accounts.c.account_id).where(accounts.c.account_id == account_id)
    )
    if found is None:
        raise NotFound(f"no account with id {account_id}")


async def _require_project(conn: AsyncConnection, project_id: str) -> None:
    found = await conn.scalar(
        sa.select(projects.c.project_id).where(projects.c.project_id == project_id)
    )
    if found is None:
        raise NotFound(f"no project with id {project_id}")


async def get_project(db: Database, project_id: str) -> dict[str, Any] | None:
    """The project's columns plus ``users`` ({account_id: group}), or None.
    The secret token is left out."""
    columns = [c for c in projects.c if c.name != "secret_token"]
    async with db.connect() as conn:
        row = (
            await conn.execute(sa.select(*columns).where(projects.c.project_id == project_id))
        ).first()
        if row is None:
            return None
        users = await conn.execute(
            sa.select(project_users.c.account_id, project_users.c.group).where(
                project_users.c.project_id == project_id
            )
        )
        project = dict(row._mapping)
        project["users"] = {u.account_id: u.group for u in users}
    return project


async def list_projects(db: Database, account_id: str) -> list[dict[str, Any]]:
    """The account's projects that are not deleted, most recently edited first."""
    query = (
        sa.select(
            projects.c.project_id,
            projects.c.title,
            projects.c.description,
            project_users.c.group,
        )
        .join(project_users, project_users.c.project_id == projects.c.project_id)
        .where(project_users.c.account_id == account_id, projects.c.deleted.is_(False))
        .order_by(projects.c.last_edited.desc(), projects.c.project_id)
    )
    async with db.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def get_group(db: Database, project_id: str, account_id: str) -> str | None:
    """ "owner", "collaborator", "viewer", or None when the account is not on the project."""
    async with db.connect() as conn:
        group = await conn.scalar(
            sa.select(project_users.c.group).where(
                project_users.c.project_id == project_id,
                project_users.c.account_id == account_id,
            )
        )
    return str(group) if group is not None else None


async def is_collaborator(db: Database, project_id: str, account_id: str) -> bool:
    """True for owners and collaborators (viewers may not change anything) of a project that
    is not deleted: a deleted project's subjects are closed to everyone but hubs."""
    async with db.connect() as conn:
        group = await conn.scalar(
            sa.select(project_users.c.group)
            .join(projects, projects.c.project_id == project_users.c.project_id)
            .where(
                project_users.c.project_id == project_id,
                project_users.c.account_id == account_id,
                sa.or_(projects.c.deleted.is_(None), projects.c.deleted.is_(False)),
            )
        )
    return group in ("owner", "collaborator")


async def add_collaborator(
    db: Database, project_id: str, account_id: str, group: str = "collaborator"
) -> None:
    """Put an account on a project. An account already on it keeps its group (changing a
    group is a separate operation, so this can never demote an owner)."""
    if group not in COLLABORATOR_GROUPS:
        raise ValueError(f"group must be one of {', '.join(COLLABORATOR_GROUPS)}, not {group!r}")
    async with db.begin() as conn:
        await _require_project(conn, project_id)
        await _require_account(conn, account_id)
        existing = await conn.scalar(
            sa.select(project_users.c.group).where(
                project_users.c.project_id == project_id,
                project_users.c.account_id == account_id,
            )
        )
        if existing is None:
            await conn.execute(
                project_users.insert().values(
                    project_id=project_id, account_id=account_id, group=group
                )
            )


async def remove_collaborator(db: Database, project_id: str, account_id: str) -> None:
    """Take an account off a project; owners cannot be removed. Removing someone who is not
    on the project does nothing."""
    where = (project_users.c.project_id == project_id, project_users.c.account_id == account_id)
    async with db.begin() as conn:
        group = await conn.scalar(sa.select(project_users.c.group).where(*where))
        if group == "owner":
            raise PermissionDenied(
                "the owner of a project cannot be removed; transfer ownership to another "
                "collaborator first"
            )
        await conn.execute(project_users.delete().where(*where))


async def set_secret_token(db: Database, project_id: str, token: str | None) -> None:
    """Set the token a running project authenticates with; None when it stops."""
    async with db.begin() as conn:
        result = await conn.execute(
            projects.update().where(projects.c.project_id == project_id).values(secret_token=token)
        )
    if result.rowcount == 0:
        raise NotFound(f"no project with id {project_id}")


async def project_for_secret(db: Database, project_id: str, secret: str) -> bool:
    """True when ``secret`` is the current secret token of the (not deleted) project."""
    async with db.connect() as conn:
        row = (
            await conn.execute(
                sa.select(projects.c.secret_token, projects.c.deleted).where(
                    projects.c.project_id == project_id
                )
            )
        ).first()
    if row is None or row.deleted or not row.secret_token or not secret:
        return False
    return hmac.compare_digest(row.secret_token.encode(), secret.encode())


async def list_collaborators(db: Database, project_id: str) -> list[dict[str, Any]]:
    """Everyone on the project with their group and names, owners first."""
    order = sa.case({"owner": 0, "collaborator": 1, "viewer": 2}, value=project_users.c.group)
    query = (
        sa.select(
            project_users.c.account_id,
            project_users.c.group,
            accounts.c.first_name,
            accounts.c.last_name,
        )
        .join(accounts, accounts.c.account_id == project_users.c.account_id)
        .where(project_users.c.project_id == project_id)
        .order_by(order, project_users.c.account_id)
    )
    async with db.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def change_user_type(
    db: Database, project_id: str, target_account_id: str, new_group: str
) -> None:
    """Change a user's group. Making someone the owner turns the previous owner into a
    collaborator (a project has one owner); the owner cannot be demoted directly, since the
    project would be left without one."""
    if new_group not in COLLABORATOR_GROUPS:
        raise ValueError(
            f"new_group must be one of {', '.join(COLLABORATOR_GROUPS)}, not {new_group!r}"
        )
    where = (
        project_users.c.project_id == project_id,
        project_users.c.account_id == target_account_id,
    )
    async with db.begin() as conn:
        await _require_project(conn, project_id)
        current = await conn.scalar(sa.select(project_users.c.group).where(*where))
        if current is None:
            raise NotFound(
                f"account {target_account_id} is not on project {project_id}; add it first"
            )
        if current == new_group:
            return
        if current == "owner":
            raise PermissionDenied(
                "the owner cannot be demoted; make another collaborator the owner instead"
            )
        if new_group == "owner":
            await conn.execute(
                project_users.update()
                .where(project_users.c.project_id == project_id, project_users.c.group == "owner")
                .values(group="collaborator")
            )
        await conn.execute(project_users.update().where(*where).values(group=new_group))


async def mark_deleted(db: Database, project_id: str) -> None:
    """Set the deleted flag (hub-delete-projects unlinks it later); the secret is cleared."""
    async with db.begin() as conn:
        result = await conn.execute(
            projects.update()
            .where(projects.c.project_id == project_id)
            .values(deleted=True, secret_token=None)
        )
    if result.rowcount == 0:
        raise NotFound(f"no project with id {project_id}")


async def set_state(db: Database, project_id: str, state: dict[str, Any]) -> dict[str, Any]:
    """Record a state transition: ``state`` plus the time it happened. Returns what was
    stored."""
    value = {**state, "time": _now().isoformat()}
    async with db.begin() as conn:
        result = await conn.execute(
            projects.update().where(projects.c.project_id == project_id).values(state=value)
        )
    if result.rowcount == 0:
        raise NotFound(f"no project with id {project_id}")
    return value


async def touch(db: Database, project_id: str) -> None:
    """Mark the project as used now."""
    async with db.begin() as conn:
        await conn.execute(
            projects.update().where(projects.c.project_id == project_id).values(last_edited=_now())
        )
