"""The project server: ``python -m cohub.projects.server --project-id ID --home DIR ...``.

The runner starts one per running project. It reads the project's secret token from
``<home>/.smc/secret_token``, connects to Conat as the project (cookies ``project_id`` +
``project_secret``), serves the project API on ``project.<id>.-.api.-`` (queue "0"), then
prints one line ``{"ready": true, ...}`` on stdout: the runner waits for that line. It runs
until SIGTERM, SIGINT or its parent (the runner) going away.

With ``--uid``/``--gid`` (the runner runs as root and isolates projects, isolation.py) it
starts as root and becomes that user before it reads anything of the project's: the home,
the secret token, every command it runs. Starting as root first, rather than being launched
as the user, is what lets the interpreter live where project users cannot read (pyenv under
a 0700 /root): everything the server needs is imported before the switch (``_preload``).
It is started with ``python -I`` in ``/``: the home is not on ``sys.path``, so nothing a
project left there is imported while the process is still root.

Project API requests are ``{name, args: [opts]}`` (or ``[name, args]``); a failure is
``{error, code}``. Every request is checked here again, since an owner or collaborator
account may publish on the project's subjects directly, not only through the hub.

- ``system.ping`` -> ``{now}``
- ``system.exec`` ``{command, args?, bash?, timeout?, max_output?, path?, err_on_exit?}``
  -> ``{stdout, stderr, exit_code, truncated}``
- ``system.writeTextFileToProject`` ``{path, content}`` -> null
- ``system.readTextFileFromProject`` ``{path}`` -> the text
- ``system.listing`` ``{path?, hidden?}`` -> ``[{name, isdir, size, mtime}]``
- ``system.activity`` -> ``{last_active, running}``: for the runner's idle check; it does
  not count as activity itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .. import logs
from ..conat import protocol as P
from ..conat.client import Client
from ..conat.codec import Message
from ..conat.errors import BadRequest, ConatError, NotFound
from ..cookies import PROJECT_ID, PROJECT_SECRET, cookie_name
from ..ids import is_uuid
from . import execute, isolation, paths

log = logging.getLogger("cohub.projects.server")

SECRET_FILE = ".smc/secret_token"
MAX_LISTING = 10_000
MAX_ARGS = 1000


def _opts(args: Any) -> dict[str, Any]:
    if args is None or args == []:
        return {}
    if not isinstance(args, list) or not isinstance(args[0], dict):
        raise BadRequest("'args' must be a list whose first item is an object of options")
    return args[0]


def _number(opts: dict[str, Any], name: str, default: int, maximum: int) -> int:
    value = opts.get(name, default)
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 1 <= value <= maximum
    ):
        raise BadRequest(f"'{name}' must be a number from 1 to {maximum}")
    return int(value)


def _flag(opts: dict[str, Any], name: str, default: bool) -> bool:
    value = opts.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(f"'{name}' must be true or false")
    return value


def _threaded(
    fn: Callable[[dict[str, Any]], Any],
) -> Callable[[dict[str, Any]], Awaitable[Any]]:
    async def run(opts: dict[str, Any]) -> Any:
        return await asyncio.to_thread(fn, opts)

    return run


class ProjectApi:
    """The project API functions, confined to ``home``."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home.resolve()
        self.env = env
        self.last_active = time.time()
        self.groups: set[int] = set()  # process groups of running exec commands
        self.functions: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "system.ping": self.ping,
            "system.exec": self.exec,
            # file work runs in a thread: a 5 MB write must not stall other requests
            "system.writeTextFileToProject": _threaded(self.write_text_file),
            "system.readTextFileFromProject": _threaded(self.read_text_file),
            "system.listing": _threaded(self.listing),
            "system.activity": self.activity,
        }

    async def handle(self, msg: Message) -> Any:
        """One request; a ConatError raised here is replied as ``{error, code}``."""
        data = msg.data
        if isinstance(data, list) and len(data) == 2:
            data = {"name": data[0], "args": data[1]}
        if not isinstance(data, dict):
            raise BadRequest("a project API request must be {name, args}")
        name = data.get("name")
        fn = self.functions.get(name) if isinstance(name, str) else None
        if fn is None:
            raise NotFound(f"unknown project API function {str(name)[:100]!r}")
        if name != "system.activity":
            self.last_active = time.time()
        try:
            return await fn(_opts(data.get("args")))
        except paths.PathRefused as e:
            raise BadRequest(str(e)) from None
        except execute.ExecFailed as e:
            raise ConatError(str(e), 500) from None
        except OSError as e:  # a missing file, a directory where a file was meant, ...
            raise BadRequest(f"{e.strerror or e}: {self._where(e)}") from None
        finally:
            if name != "system.activity":
                self.last_active = time.time()  # a long exec was activity until it ended

    def _where(self, error: OSError) -> str:
        """The path an error is about, relative to the home (callers never see our paths)."""
        if not error.filename:
            return "the path"
        return os.path.relpath(error.filename, self.home)

    def _workdir(self, path: object) -> Path:
        cwd = paths.inside(self.home, path or "", "path", allow_empty=True)
        if not cwd.is_dir():
            raise BadRequest(f"'path' {str(path)[:200]!r} is not a directory in the project")
        return cwd

    async def ping(self, opts: dict[str, Any]) -> dict[str, Any]:
        return {"now": time.time()}

    async def activity(self, opts: dict[str, Any]) -> dict[str, Any]:
        return {"last_active": self.last_active, "running": len(self.groups)}

    async def exec(self, opts: dict[str, Any]) -> dict[str, Any]:
        command = opts.get("command")
        if not isinstance(command, str) or not command.strip() or "\x00" in command:
            raise BadRequest("'command' must be a non-empty string")
        args = opts.get("args") or []
        if (
            not isinstance(args, list)
            or len(args) > MAX_ARGS
            or not all(isinstance(a, str) and "\x00" not in a for a in args)
        ):
            raise BadRequest(f"'args' must be a list of at most {MAX_ARGS} strings")
        timeout = _number(
            opts, "timeout", P.PROJECT_EXEC_TIMEOUT_DEFAULT_S, P.PROJECT_EXEC_TIMEOUT_MAX_S
        )
        max_output = _number(
            opts, "max_output", P.PROJECT_EXEC_OUTPUT_DEFAULT, P.PROJECT_EXEC_OUTPUT_MAX
        )
        bash = _flag(opts, "bash", False)
        err_on_exit = _flag(opts, "err_on_exit", True)
        cwd = await asyncio.to_thread(self._workdir, opts.get("path"))
        # bash: the command is a script and args are its $1, $2, ...
        argv = ["bash", "-c", command, "bash", *args] if bash else [command, *args]
        result = await execute.run(
            argv,
            cwd=cwd,
            env={**self.env, "PWD": str(cwd)},
            timeout=timeout,
            max_output=max_output,
            groups=self.groups,
        )
        code = result["exit_code"]
        if err_on_exit and code != 0 and not result["truncated"]:
            tail = result["stderr"][-1000:].strip()
            raise ConatError(
                f"the command exited with code {code}" + (f": {tail}" if tail else ""), 500
            )
        return result

    def write_text_file(self, opts: dict[str, Any]) -> None:
        content = opts.get("content")
        if not isinstance(content, str):
            raise BadRequest("'content' must be a string (the text of the file)")
        data = content.encode(errors="surrogatepass")
        if len(data) > P.PROJECT_FILE_MAX_BYTES:
            raise BadRequest(f"'content' is larger than {P.PROJECT_FILE_MAX_BYTES} bytes")
        fd = paths.open_for_write(self.home, opts.get("path"))
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    def read_text_file(self, opts: dict[str, Any]) -> str:
        fd = paths.open_for_read(self.home, opts.get("path"))
        with os.fdopen(fd, "rb") as f:
            data = f.read(P.PROJECT_FILE_MAX_BYTES + 1)
        if len(data) > P.PROJECT_FILE_MAX_BYTES:
            raise BadRequest(f"the file is larger than {P.PROJECT_FILE_MAX_BYTES} bytes")
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise BadRequest("the file is not UTF-8 text") from None

    def listing(self, opts: dict[str, Any]) -> list[dict[str, Any]]:
        target = paths.inside(self.home, opts.get("path") or "", allow_empty=True)
        hidden = _flag(opts, "hidden", False)
        entries: list[dict[str, Any]] = []
        with os.scandir(target) as it:
            for entry in it:
                if not hidden and entry.name.startswith("."):
                    continue
                if len(entries) >= MAX_LISTING:
                    break
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # removed while we listed
                entries.append(
                    {
                        "name": entry.name,
                        "isdir": entry.is_dir(follow_symlinks=False),
                        "size": st.st_size,
                        "mtime": st.st_mtime,
                    }
                )
        return sorted(entries, key=lambda e: e["name"])

    def kill_commands(self) -> None:
        for pgid in list(self.groups):
            execute.kill_group(pgid)


def _die_with_parent(parent: int) -> None:
    """SIGTERM when the runner dies, so no project server outlives it; exit at once if it
    already died before we asked (the prctl would then never fire)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:
        raise SystemExit("the project runner is gone; not starting")


async def serve(project_id: str, home: Path, url: str, base_path: str, parent: int) -> int:
    """Serve the project API until told to stop; the exit code (0 when stopped)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    secret = (home / SECRET_FILE).read_text().strip()
    nc = Client(
        url + base_path.rstrip("/"),
        cookies={
            cookie_name(base_path, PROJECT_ID): project_id,
            cookie_name(base_path, PROJECT_SECRET): secret,
        },
    )
    env = {**os.environ, "HOME": str(home)}
    api = ProjectApi(home, env)
    try:
        identity = (await nc.connect(timeout=15)).identity
        if identity is None or identity.kind != "project" or identity.id != project_id:
            log.error("signed in as %s, not as project %s", identity, project_id)
            return 3
        service = await nc.service(P.project_api_subject(project_id), api.handle)
        ready = {"ready": True, "pid": os.getpid(), "subject": P.project_api_subject(project_id)}
        print(json.dumps(ready), flush=True)
        log.info("project %s serving %s", project_id, P.project_api_subject(project_id))
        while not stop.is_set() and os.getppid() == parent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        service.cancel()
        await asyncio.gather(service, return_exceptions=True)
        return 0
    except ConatError as e:
        log.error("project %s cannot serve: %s", project_id, e.message)
        return 2
    finally:
        api.kill_commands()
        await nc.close()


def _preload() -> None:
    """Import, while still root, what the server may otherwise import lazily later, when the
    interpreter's own directory may be out of reach (thread pools for file work, the codec
    behind socket.getaddrinfo for host names)."""
    import concurrent.futures.thread  # noqa: F401
    import encodings.idna  # noqa: F401

    "".encode("idna")
    asyncio.new_event_loop().close()  # the selector and unix event loop modules


def _become(project_user: isolation.User, home: Path) -> None:
    _preload()
    isolation.drop_to(project_user)
    os.umask(0o022)  # the hub runs with 0o077; a project's own files are as usual
    os.chdir(home)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cohub.projects.server", description=__doc__)
    parser.add_argument("--project-id", required=True)
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--conat-url", required=True, help="the router, e.g. http://host:port")
    parser.add_argument("--base-path", default="/")
    parser.add_argument("--parent-pid", required=True, type=int)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--uid", type=int, help="run as this user (the server starts as root)")
    parser.add_argument("--gid", type=int)
    args = parser.parse_args(argv)
    if not is_uuid(args.project_id):
        parser.error("--project-id must be a UUID")
    if (args.uid is None) != (args.gid is None):
        parser.error("--uid and --gid go together")
    logs.setup(args.log_level)
    if args.uid is not None:
        _become(isolation.User(args.uid, args.gid), args.home)
    # after the switch: changing credentials clears the parent-death signal
    _die_with_parent(args.parent_pid)
    # plain asyncio, not uvloop: exec relies on preexec_fn, which asyncio's loop supports
    return asyncio.run(
        serve(args.project_id, args.home, args.conat_url, args.base_path, args.parent_pid)
    )


if __name__ == "__main__":
    sys.exit(main())
