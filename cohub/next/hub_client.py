"""hub-next calls the hub API over Conat, as the hub, on behalf of the caller.

The hub API (hub-conat-api) owns the rules; hub-next only decides who is calling and then
requests ``hub.<account|project>.<id>.api`` with the hub's credentials, exactly as that
account or project would. The connection is opened on first use and kept.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..conat.client import Client
from ..conat.errors import ConatError, NoSubscribers, RequestTimeout
from ..conat.protocol import PERMISSIONS_CHANGED
from ..cookies import HUB_PASSWORD, cookie_name
from .http import HttpError
from .identity import Who

log = logging.getLogger("cohub.next.hub_client")

CALL_TIMEOUT_S = 30.0
PUBLISH_TIMEOUT_S = 5.0
_STATUS = {400, 401, 403, 404, 409, 413, 429, 500, 502, 503, 504}


class HubClient:
    def __init__(self, router_url: str, prefix: str, hub_password: str) -> None:
        self._client = Client(
            router_url + prefix.rstrip("/"),
            cookies={cookie_name(prefix, HUB_PASSWORD): hub_password},
        )
        self._lock = asyncio.Lock()
        self._connected = False

    async def _ensure(self) -> Client:
        async with self._lock:
            if not self._connected:
                try:
                    await self._client.connect(timeout=10)
                except ConatError as e:
                    raise HttpError(
                        f"the Conat router is not reachable from hub-next: {e.message}", 503
                    ) from None
                self._connected = True
        return self._client

    async def call(
        self, who: Who, name: str, args: list[Any], timeout: float = CALL_TIMEOUT_S
    ) -> Any:
        """Call ``name`` as ``who``; HttpError carries the hub's error and code."""
        client = await self._ensure()
        subject = f"hub.{who.kind}.{who.id}.api"
        try:
            reply = await client.request(
                subject, {"name": name, "args": args}, timeout=timeout, wait_for_interest=True
            )
        except NoSubscribers:
            raise HttpError(
                "the hub API is not running (no hub-conat-api answers); try again shortly", 503
            ) from None
        except RequestTimeout:
            raise HttpError(f"the hub API did not answer within {timeout:.0f} s", 504) from None
        except ConatError as e:
            raise HttpError(f"hub API call failed: {e.message}", 502) from None
        data = reply.data
        if isinstance(data, dict) and "error" in data:
            code = data.get("code")
            status = code if isinstance(code, int) and code in _STATUS else 400
            raise HttpError(str(data["error"]), status)
        return data

    async def revoked(self, data: dict[str, Any]) -> None:
        """Tell the routers that access was taken away (``{"account_id": ...}``) so they
        re-check that identity's connections. A failure is logged, not raised: the database
        change already happened, and the caller's request should not fail for it."""
        try:
            client = await self._ensure()
            await client.publish(PERMISSIONS_CHANGED, data, timeout=PUBLISH_TIMEOUT_S)
        except (HttpError, ConatError, TimeoutError) as e:
            log.warning("could not publish %s %s: %s", PERMISSIONS_CHANGED, data, e)

    async def close(self) -> None:
        await self._client.close()
