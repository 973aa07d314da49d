"""Which persist server owns a scope: ``persist.<scope>.id`` -> a server id.

The answer is ``ids[abs(java_string_hash(scope)) % len(ids)]``: a pure function of the scope,
so it takes no memory and stays the same while the set of servers does. Two clients asking
about one scope must reach the same server, or each would miss the other's changefeed events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ..conat.client import Client
from ..conat.codec import Message
from ..conat.errors import BadRequest
from .paths import SERVICE

log = logging.getLogger("cohub.persist.load_balancer")

SUBJECT = f"{SERVICE}.*.id"


def java_string_hash(text: str) -> int:
    """Java's String.hashCode: over UTF-16 code units, with int32 wrap-around."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def pick(ids: Sequence[str], scope: str) -> str:
    if not ids:
        raise ValueError("there must be at least one persist server id")
    return ids[abs(java_string_hash(scope)) % len(ids)]


def server_id_subject(scope: str) -> str:
    return f"{SERVICE}.{scope}.id"


async def serve(nc: Client, ids: Sequence[str]) -> asyncio.Task[None]:
    """Answer ``persist.<scope>.id`` requests (queue "0") until the task is cancelled."""
    if not ids:
        raise ValueError("there must be at least one persist server id")
    fixed = list(ids)

    async def answer(msg: Message) -> str:
        tokens = msg.subject.split(".")
        if len(tokens) != 3:
            raise BadRequest(f"ask on {SERVICE}.<scope>.id, not {msg.subject}")
        return pick(fixed, tokens[1])

    log.info("persist load balancer over %s", fixed)
    return await nc.service(SUBJECT, answer)
