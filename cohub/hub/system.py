"""The ``system.*`` hub API functions."""

from __future__ import annotations

import time
from typing import Any

from .context import ApiFunction, Context


async def ping(ctx: Context, *args: Any) -> dict[str, Any]:
    return {"now": int(time.time() * 1000)}


async def test(ctx: Context, *args: Any) -> dict[str, Any]:
    return {f"{ctx.caller.kind}_id": ctx.caller.id}


FUNCTIONS: dict[str, ApiFunction] = {"ping": ping, "test": test}
