"""``cohub``: start hub roles. This module wires; the roles hold the logic."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from . import config, logs
from .conat import role as router_role
from .conat.auth import load_or_create_secret
from .db import engine
from .hub import role as api_role
from .next import app as next_role
from .persist import role as persist_role
from .roles import Role, RoleContext, compose
from .services import stats as stats_role

log = logging.getLogger("cohub")

RoleFactory = Callable[[RoleContext], Role]

# Order matters: the router wraps the app, and the API connects to it once it listens.
BUILT: dict[str, RoleFactory] = {
    "hub-conat-router": router_role.role,
    "hub-next": next_role.role,
    "hub-stats": stats_role.role,
    "hub-conat-api": api_role.role,
    "hub-conat-persist": persist_role.role,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cohub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start hub roles (all of them by default)")
    config.add_arguments(serve)
    serve.add_argument(
        "--role",
        action="append",
        choices=config.ROLES,
        metavar="NAME",
        help="start only this role (repeatable); one of: " + ", ".join(config.ROLES),
    )
    db = sub.add_parser("db", help="database maintenance")
    config.add_arguments(db)
    db.add_argument("action", choices=["upgrade", "current"], help="upgrade to the newest schema")
    return parser


def serve(settings: config.Settings, selected: list[str]) -> int:
    import uvicorn

    unbuilt = [name for name in selected if name not in BUILT]
    for name in unbuilt:
        print(f"cohub: role {name} is not built yet; it is NOT running", file=sys.stderr)
    names = [name for name in BUILT if name in selected]
    if not names:
        print("cohub: none of the selected roles is built yet; nothing to start", file=sys.stderr)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log.info("migrating database schema")
    backup = engine.migrate(settings.database_url)
    if backup is not None:
        log.info("backed up the database to %s before migrating", backup)
    ctx = RoleContext(
        settings=settings,
        db=engine.Database(settings.database_url),
        hub_password=load_or_create_secret(settings.password_file),
    )
    app = compose(ctx, [BUILT[name](ctx) for name in names])
    print(
        f"cohub: serving {', '.join(names)} on http://{settings.host}:{settings.port}{settings.prefix}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        ws=_websocket_protocol(),
        ws_per_message_deflate=False,  # never compress small frames (conat.md section 10)
        ws_max_size=16 * 1024 * 1024,
        lifespan="on",
    )
    return 0


def _websocket_protocol() -> Any:
    """Our write-coalescing websocket protocol, or uvicorn's own if its internals moved."""
    try:
        from ._websocket_protocol import CoalescingWebSocketProtocol
    except ImportError:
        log.warning("uvicorn's websocket internals changed: using its plain sans-I/O protocol")
        return "websockets-sansio"
    return CoalescingWebSocketProtocol


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = config.load(args)
    logs.setup(settings.log_level)
    if args.command == "serve":
        return serve(settings, args.role or list(config.ROLES))
    if args.command == "db":
        if args.action == "upgrade":
            engine.migrate(settings.database_url)
            print("database schema is up to date")
        else:
            print(engine.current_revision(settings.database_url))
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
