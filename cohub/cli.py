"""``cohub``: start hub roles. This module wires; the roles hold the logic."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tomllib
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from . import config, logs
from .conat import role as router_role
from .conat.auth import load_or_create_secret
from .db import engine
from .db.errors import DBError
from .hub import role as api_role
from .next import app as next_role
from .persist import role as persist_role
from .projects import role as runner_role
from .roles import Role, RoleContext, compose
from .services import stats as stats_role

log = logging.getLogger("cohub")

DESCRIPTION = """The hub layer of a collaborative computing platform: the Conat router, persistence,
the hub API and the pages. `cohub serve` runs every role in one process; `--role` picks some.
Every option also reads COHUB_<NAME> from the environment or a TOML file (--config)."""

RoleFactory = Callable[[RoleContext], Role]

# Order matters: the router wraps the app, and the API connects to it once it listens; roles
# start in this order, and hub-stats goes last so its first snapshot sees the hub API's row in
# hub_servers.
BUILT: dict[str, RoleFactory] = {
    "hub-conat-router": router_role.role,
    "hub-next": next_role.role,
    "hub-conat-api": api_role.role,
    "hub-conat-persist": persist_role.role,
    "hub-stats": stats_role.role,
}


# roles that connect to a router as Conat clients
NEEDS_ROUTER = frozenset({"hub-conat-api", "hub-conat-persist", "hub-next"})


def _explain(error: BaseException, settings: config.Settings) -> str:
    """A start-up failure in one line that says what to do."""
    if isinstance(error, SQLAlchemyError):
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        return (
            f"the database at {settings.database_url.split('@')[-1]} does not answer ({reason}); "
            "check --db-url (COHUB_DB_URL) and that the database server is running"
        )
    if isinstance(error, OSError):
        return (
            f"{error.strerror or error} for {error.filename or settings.data_dir}; check "
            "--data-dir (COHUB_DATA_DIR) and its permissions"
        )
    return str(error)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cohub", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start hub roles (all of them by default)")
    config.add_arguments(serve)
    serve.add_argument(
        "--role",
        action="append",
        choices=config.ROLES,
        metavar="NAME",
        help="start only this role (repeatable); one of: "
        + ", ".join(config.ROLES)
        + ". Built so far: "
        + ", ".join(BUILT),
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
    clients = [name for name in names if name in NEEDS_ROUTER]
    if clients and "hub-conat-router" not in names and not settings.conat_url:
        print(
            f"cohub: {', '.join(clients)} talk(s) to a Conat router, and none runs here: add "
            "--role hub-conat-router, or give the router's address with --conat-url "
            "(COHUB_CONAT_URL)",
            file=sys.stderr,
        )
        return 2
    os.umask(0o077)  # the database, secrets, streams and logs: for the hub's user only
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        runner_role.protect_files(settings)  # also what an older cohub left readable
        log.info("migrating database schema")
        backup = engine.migrate(settings.database_url)
        if backup is not None:
            log.info("backed up the database to %s before migrating", backup)
        ctx = RoleContext(
            settings=settings,
            db=engine.Database(settings.database_url),
            hub_password=load_or_create_secret(settings.password_file),
        )
    except (OSError, DBError, SQLAlchemyError, ValueError) as e:
        print(f"cohub: cannot start: {_explain(e, settings)}", file=sys.stderr)
        return 1
    roles = [BUILT[name](ctx) for name in names]
    if "hub-conat-api" in names and settings.project_runner == "local":
        try:
            # first: its start resets what a crashed runner left "running" before any other
            # role looks (hub-stats' first snapshot); the API's start/stop ask it over Conat
            roles.insert(0, runner_role.role(ctx))
        except runner_role.CannotIsolate as e:
            print(f"cohub: cannot start: {e}", file=sys.stderr)
            return 1
    app = compose(ctx, roles)
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
        # X-Forwarded-For is not trusted: it would let anyone pick the address that sign-in
        # throttling counts. Behind an ingress, terminate there and keep this off.
        proxy_headers=False,
        ws_ping_interval=None,  # engine.io heartbeats already keep /conat alive
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
    try:
        settings = config.load(args)
    except (OSError, tomllib.TOMLDecodeError) as e:
        print(f"cohub: cannot read the configuration file: {e}", file=sys.stderr)
        return 2
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
