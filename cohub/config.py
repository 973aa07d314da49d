"""One typed settings object shared by every role.

Each option is declared once, here, with its type, default and help text. Values come from
(lowest to highest precedence) the defaults, an optional TOML file (``--config`` or
``COHUB_CONFIG``), ``COHUB_<NAME>`` environment variables, then command-line flags.
A role running in its own process gets its settings the same way, never by importing
another role.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLES: tuple[str, ...] = (
    "hub-conat-api",
    "hub-conat-persist",
    "hub-conat-router",
    "hub-proxy",
    "hub-next",
    "hub-maintenance-expired",
    "hub-maintenance-syncstrings",
    "hub-mentions",
    "hub-delete-projects",
    "hub-stats",
)


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class Settings:
    """Every cohub option. Field names map to ``--flag-name`` and ``COHUB_FLAG_NAME``."""

    host: str = _opt("127.0.0.1", "Address the HTTP server listens on.")
    port: int = _opt(5000, "Port the HTTP server listens on.")
    data_dir: Path = _opt(Path("data"), "Directory for the SQLite database, secrets and streams.")
    db_url: str = _opt(
        "",
        "Database URL. Empty means a SQLite file in the data dir; "
        "use postgresql://user@host:port/db for PostgreSQL.",
    )
    base_path: str = _opt("/", "URL prefix every route is served under, e.g. /hub/.")
    conat_url: str = _opt(
        "",
        "URL of the Conat router that roles connect to as clients. "
        "Empty means this process's own router (http://host:port).",
    )
    conat_password_file: Path | None = _opt(
        None,
        "File holding the hub's Conat secret. Empty means <data-dir>/secrets/conat-password, "
        "created on first start.",
    )
    stats_interval_s: float = _opt(300.0, "Seconds between statistics snapshots (hub-stats).")
    persist_count: int = _opt(
        1, "Number of persist server processes hub-conat-persist runs (and restarts if they die)."
    )
    persist_mode: str = _opt(
        "disk",
        "Where stream files live: 'disk' (a dedicated volume; SQLite WAL) or 'nfs' "
        "(a directory shared by every persist process; no WAL).",
    )
    persist_sync_dir: Path | None = _opt(
        None, "Directory of the persist stream files. Empty means <data-dir>/sync."
    )
    persist_archive_dir: Path | None = _opt(
        None,
        "Optional directory for archive copies of the stream files, refreshed every "
        "--persist-archive-interval-s and on close. Empty means no archive.",
    )
    persist_archive_interval_s: float = _opt(
        30.0, "Seconds between archive copies of a changed stream (with --persist-archive-dir)."
    )
    persist_server_id_prefix: str = _opt(
        "",
        "Prefix of this pod's persist server ids, unique across pods. Empty means the host "
        "name (the pod name on Kubernetes).",
    )
    project_runner: str = _opt(
        "local",
        "How hub-conat-api runs projects: 'local' (project servers as processes of this "
        "machine, homes under <data-dir>/projects) or 'none' (projects cannot start).",
    )
    project_isolation: str = _opt(
        "auto",
        "Whether the local runner runs each project as an OS user of its own: 'uid' (needs "
        "root; a uid per project from 1879048192 up, owning only its home; refuse to start if "
        "impossible), 'none' (projects run as the hub's own user and can read its files) or "
        "'auto' (uid when running as root and possible, else none with a warning).",
    )
    project_idle_timeout_s: float = _opt(
        3600.0,
        "Seconds without project API calls or touches after which the local runner stops a "
        "project.",
    )
    log_level: str = _opt("info", "Log level: debug, info, warning or error.")
    admin_email: str = _opt(
        "",
        "Email of the first admin account, created (or given the admin group) at start; "
        "idempotent. Needs --admin-password for a new account.",
    )
    admin_password: str = _opt(
        "", "Password of the first admin account when it is created (8-64 characters)."
    )
    public_url: str = _opt(
        "",
        "Public URL of the site including the base path, used in emailed links (password "
        "reset, invitations). "
        "Empty means http://host:port plus the base path.",
    )
    smtp_host: str = _opt(
        "",
        "SMTP server for outgoing email; the email_smtp_server site setting overrides it. "
        "Empty (and no site setting) means email is not configured.",
    )
    smtp_port: int = _opt(25, "SMTP port (site setting email_smtp_port overrides it).")
    smtp_username: str = _opt("", "SMTP login, if the server needs one.")
    smtp_password: str = _opt("", "SMTP password, if the server needs one.")
    smtp_from: str = _opt("", "Sender address of outgoing email; empty means noreply@<host>.")
    smtp_security: str = _opt(
        "", "SMTP transport security: '' (plain), 'starttls' or 'tls' (implicit TLS)."
    )

    # ---- derived values -------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.data_dir / 'cohub.sqlite3').resolve()}"

    @property
    def prefix(self) -> str:
        """The base path normalized to start and end with ``/``."""
        p = "/" + self.base_path.strip("/")
        return p if p == "/" else p + "/"

    @property
    def conat_path(self) -> str:
        return self.prefix + "conat"

    @property
    def router_url(self) -> str:
        if self.conat_url:
            return self.conat_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def site_url(self) -> str:
        """The public URL of the site, ending with the base path (and a slash)."""
        if self.public_url:
            return self.public_url.rstrip("/") + "/"
        return self.router_url + self.prefix

    @property
    def sync_dir(self) -> Path:
        return self.persist_sync_dir or self.data_dir / "sync"

    @property
    def projects_dir(self) -> Path:
        return self.data_dir / "projects"

    @property
    def password_file(self) -> Path:
        return self.conat_password_file or self.data_dir / "secrets" / "conat-password"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env(name: str) -> str:
    return "COHUB_" + name.upper()


def _convert(f: dataclasses.Field[Any], raw: Any) -> Any:
    """Coerce a raw value to the field's type; SystemExit naming the option when it can't."""
    if raw is None:
        return None
    typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if typ.startswith("int"):
            return int(raw)
        if typ.startswith("float"):
            return float(raw)
    except (TypeError, ValueError):
        raise SystemExit(
            f"invalid value {raw!r} for {_flag(f.name)} ({_env(f.name)}): expected {typ}"
        ) from None
    if typ.startswith("Path"):
        return Path(raw) if raw != "" else None
    return str(raw)


def _shown(value: Any) -> str:
    """A default as a user would type it: data, 5000, 127.0.0.1; empty for '' and None."""
    if value is None or value == "":
        return "empty"
    return str(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; defaults stay unset so lower layers show through."""
    for f in dataclasses.fields(Settings):
        text = f"{f.metadata['help']} [env {_env(f.name)}; default {_shown(f.default)}]"
        parser.add_argument(
            _flag(f.name),
            dest=f.name,
            default=None,
            help=text.replace("%", "%%"),  # argparse formats help with %
        )
    parser.add_argument("--config", default=None, help="TOML file with settings [env COHUB_CONFIG]")


_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
PORT_FIELDS = ("port", "smtp_port")
PROJECT_RUNNERS = ("local", "none")
PROJECT_ISOLATIONS = ("auto", "uid", "none")
LOG_LEVELS = ("debug", "info", "warning", "error")


def _invalid(name: str, message: str) -> SystemExit:
    return SystemExit(f"invalid value for {_flag(name)} ({_env(name)}): {message}")


def validate(settings: Settings) -> Settings:
    """SystemExit naming the option for a value no server could use."""
    for name in PORT_FIELDS:
        port = getattr(settings, name)
        if not 1 <= port <= 65535:
            raise _invalid(name, f"{port} is not a port number (1-65535)")
    if settings.project_runner not in PROJECT_RUNNERS:
        raise _invalid("project_runner", f"{settings.project_runner!r}; use 'local' or 'none'")
    if settings.project_isolation not in PROJECT_ISOLATIONS:
        raise _invalid(
            "project_isolation", f"{settings.project_isolation!r}; use 'auto', 'uid' or 'none'"
        )
    if settings.log_level.lower() not in LOG_LEVELS:
        raise _invalid("log_level", f"{settings.log_level!r}; use {', '.join(LOG_LEVELS)}")
    if not settings.project_idle_timeout_s > 0:
        raise _invalid("project_idle_timeout_s", "must be a positive number of seconds")
    base = settings.base_path
    inner = base.strip("/")
    if inner:
        for segment in inner.split("/"):
            if not _SEGMENT.fullmatch(segment) or segment in (".", ".."):
                raise _invalid(
                    "base_path",
                    f"{base!r} is not a URL path prefix: use /-separated segments of letters, "
                    "digits and . _ ~ - (no empty, '.' or '..' segments, no spaces, ?, #, % "
                    "or control characters), e.g. /hub/",
                )
    return settings


def load(args: argparse.Namespace | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build settings from defaults, config file, environment and parsed flags."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = (getattr(args, "config", None) if args else None) or env.get("COHUB_CONFIG")
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    if config_file:
        with open(config_file, "rb") as fh:
            data = tomllib.load(fh)
        for key, raw in data.items():
            name = key.replace("-", "_")
            if name not in fields:
                raise SystemExit(f"config file {config_file}: unknown setting {key!r}")
            values[name] = _convert(fields[name], raw)
    for name, f in fields.items():
        if _env(name) in env:
            values[name] = _convert(f, env[_env(name)])
        if args is not None and getattr(args, name, None) is not None:
            values[name] = _convert(f, getattr(args, name))
    try:
        settings = Settings(**values)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"invalid setting: {e}") from e
    return validate(settings)
