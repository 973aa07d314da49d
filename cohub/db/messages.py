"""Messages between accounts (the ``messages.*`` hub API group)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from cohub.db.engine import Database
from cohub.db.errors import NotFound
from cohub.db.models import accounts, message_recipients, messages

MAX_RECIPIENTS = 100
MAX_SUBJECT = 1024
MAX_BODY = 100_000

MessageKind = Literal["received", "sent", "new"]


def _now() -> datetime:
    return datetime.now(UTC)


async def send(
    db: Database,
    from_id: str,
    to_ids: list[str],
    subject: str,
    body: str,
    reply_id: int | None = None,
) -> int:
    """Store a message to existing accounts and return its id. Recipients are account ids
    or email addresses of accounts; NotFound names the first one that does not exist."""
    async with db.begin() as conn:
        resolved: list[str] = []
        for target in dict.fromkeys(to_ids):
            column = accounts.c.email_address if "@" in target else accounts.c.account_id
            found = await conn.scalar(
                sa.select(accounts.c.account_id).where(
                    column == (target.strip().lower() if "@" in target else target),
                    accounts.c.deleted.is_(False),
                )
            )
            if found is None:
                raise NotFound(f"no account {target!r} to send a message to")
            if found not in resolved:
                resolved.append(str(found))
        if reply_id is not None:
            visible = await conn.scalar(
                sa.select(messages.c.id)
                .outerjoin(message_recipients, message_recipients.c.message_id == messages.c.id)
                .where(
                    messages.c.id == reply_id,
                    sa.or_(
                        messages.c.from_id == from_id, message_recipients.c.account_id == from_id
                    ),
                )
                .limit(1)
            )
            if visible is None:
                raise NotFound(f"no message {reply_id} of yours to reply to")
        message_id: int = (
            await conn.execute(
                messages.insert()
                .returning(messages.c.id)
                .values(sent=_now(), from_id=from_id, subject=subject, body=body, reply_id=reply_id)
            )
        ).scalar_one()
        for account_id in resolved:
            await conn.execute(
                message_recipients.insert().values(message_id=message_id, account_id=account_id)
            )
    return message_id


async def get(
    db: Database,
    account_id: str,
    *,
    kind: MessageKind = "received",
    limit: int = 100,
    offset: int = 0,
    cutoff: datetime | None = None,
) -> list[dict[str, Any]]:
    """The account's messages, newest first: received (default), sent, or new (unread)."""
    columns = [
        messages.c.id,
        messages.c.sent,
        messages.c.from_id,
        messages.c.subject,
        messages.c.body,
        messages.c.reply_id,
    ]
    if kind == "sent":
        query = sa.select(*columns).where(messages.c.from_id == account_id)
    else:
        query = (
            sa.select(*columns, message_recipients.c.read)
            .join(message_recipients, message_recipients.c.message_id == messages.c.id)
            .where(message_recipients.c.account_id == account_id)
        )
        if kind == "new":
            query = query.where(message_recipients.c.read.is_(None))
    if cutoff is not None:
        query = query.where(messages.c.sent > cutoff)
    query = query.order_by(messages.c.sent.desc(), messages.c.id.desc()).limit(limit).offset(offset)
    async with db.connect() as conn:
        rows = [dict(row._mapping) for row in await conn.execute(query)]
        ids = [row["id"] for row in rows]
        to: dict[int, list[str]] = {i: [] for i in ids}
        if ids:
            for r in await conn.execute(
                sa.select(message_recipients.c.message_id, message_recipients.c.account_id).where(
                    message_recipients.c.message_id.in_(ids)
                )
            ):
                to[r.message_id].append(str(r.account_id))
    for row in rows:
        row["to_ids"] = sorted(to[row["id"]])
    return rows
