"""The ``projects.*`` functions that need a running project: start, stop, state, status,
copyPathBetweenProjects, exec and writeTextFile.

The hub checks access and arguments here, then asks others over Conat: start, stop and copy
go to the project runner on ``project-runner.api`` (cohub/projects/runner.py; only hubs may
publish there), exec and file writes to the project's own server on
``project.<id>.-.api.-``. When nothing answers (``--project-runner none``, or the project
is not running) the reply is a clear 503 and nothing is reported as done that was not done.
"""

from __future__ import annotations

import asyncio
import posixpath
import time
from typing import Any

from ..conat import protocol as P
from ..conat.errors import ConatError, NoSubscribers
from ..db import projects as db_projects
from .access import require_project
from .context import (
    ApiError,
    ApiFunction,
    Context,
    bool_option,
    int_option,
    options,
    string_option,
    uuid_option,
)

NO_RUNNER = "no project runner answers in this cohub deployment, so projects cannot run"
START_TIMEOUT_S = 30  # the runner waits up to 20 s for a project server to report ready
STOP_TIMEOUT_S = 15  # SIGTERM, then SIGKILL after 5 s
COPY_TIMEOUT_S = 300
RUNNER_WAIT_S = 5.0
STOPPED = "opened"  # the reference's name for "exists, not running"
ACTIVE = ("starting", "running", "stopping")


async def _project_row(ctx: Context, project_id: str) -> dict[str, Any]:
    project = await db_projects.get_project(ctx.db, project_id)
    if project is None:
        raise ApiError(f"no project with id {project_id}", 404)
    return project


def _current_state(project: dict[str, Any]) -> dict[str, Any]:
    state = project.get("state")
    return dict(state) if isinstance(state, dict) and state.get("state") else {"state": STOPPED}


async def _call_runner(ctx: Context, name: str, opts: dict[str, Any], timeout: float) -> Any:
    """Ask the project runner; NoSubscribers when none runs (the caller decides what that
    means), ApiError for its refusals."""
    # A local runner subscribes a moment after the process starts listening (it connects to
    # this process's own router): give it that moment instead of failing the first calls.
    local = ctx.settings is not None and ctx.settings.project_runner == "local"
    deadline = time.monotonic() + (RUNNER_WAIT_S if local else 0)
    try:
        while True:
            try:
                reply = await ctx.request(
                    P.PROJECT_RUNNER_SUBJECT, {"name": name, "args": [opts]}, timeout
                )
                break
            except NoSubscribers:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.2)
    except NoSubscribers:
        raise
    except ConatError as e:
        raise ApiError(f"the project runner did not answer: {e.message}", 504) from None
    _raise_refusal(reply, "")
    return reply


def _raise_refusal(reply: Any, prefix: str) -> None:
    """ApiError for an ``{error, code}`` reply of the runner or a project server: their 4xx
    (a bad path, no such file, a deleted project) are the caller's to fix and pass through;
    anything else is the upstream failing, which to the caller is a 502."""
    if isinstance(reply, dict) and "error" in reply:
        code = reply.get("code")
        status = code if isinstance(code, int) and 400 <= code < 500 else 502
        raise ApiError(f"{prefix}{reply['error']}", status)


async def start(ctx: Context, *args: Any) -> dict[str, Any]:
    """Start a project (owners and collaborators) and return its state. With no runner
    answering, the failed attempt is recorded in the project's state: code 503."""
    project_id = uuid_option(options(args), "project_id")
    await require_project(ctx, project_id, "write")
    project = await _project_row(ctx, project_id)
    if project["deleted"]:
        raise ApiError(f"project {project_id} is deleted; it cannot be started", 409)
    try:
        state: dict[str, Any] = await _call_runner(
            ctx, "start", {"project_id": project_id}, START_TIMEOUT_S
        )
    except NoSubscribers:
        error = f"start requested, but {NO_RUNNER}"
        await db_projects.set_state(ctx.db, project_id, {"state": STOPPED, "error": error})
        raise ApiError(
            f"cannot start project {project_id}: {NO_RUNNER}. The attempt was recorded; "
            f"the project's state stays '{STOPPED}' (not running).",
            503,
        ) from None
    return state


async def stop(ctx: Context, *args: Any) -> dict[str, Any]:
    """Stop a project and return its state. With no runner answering, a project that is not
    recorded as running is already stopped (its state is recorded and its secret token
    cleared); one recorded as running cannot be stopped: code 503."""
    project_id = uuid_option(options(args), "project_id")
    await require_project(ctx, project_id, "write")
    project = await _project_row(ctx, project_id)
    try:
        state: dict[str, Any] = await _call_runner(
            ctx, "stop", {"project_id": project_id}, STOP_TIMEOUT_S
        )
        return state
    except NoSubscribers:
        pass
    current = _current_state(project)
    if current["state"] in ACTIVE:
        raise ApiError(
            f"cannot stop project {project_id} (state '{current['state']}'): {NO_RUNNER}", 503
        )
    await db_projects.set_secret_token(ctx.db, project_id, None)
    return await db_projects.set_state(ctx.db, project_id, {"state": STOPPED})


async def stop_deleted(ctx: Context, project_id: str) -> str | None:
    """Stop a project that was just marked deleted, and every process of its user: the
    runner does both, and refuses to start it from now on. Best effort: the project is
    deleted whatever happens here; the reply is why it could not be stopped, or None."""
    try:
        await _call_runner(ctx, "stop", {"project_id": project_id}, STOP_TIMEOUT_S)
    except NoSubscribers:
        return NO_RUNNER
    except ApiError as e:
        return e.message
    return None


async def state(ctx: Context, *args: Any) -> dict[str, Any]:
    """The recorded state: {state, time?, error?}; "opened" when never started."""
    project_id = uuid_option(options(args), "project_id")
    await require_project(ctx, project_id, "read")
    return _current_state(await _project_row(ctx, project_id))


async def status(ctx: Context, *args: Any) -> dict[str, Any]:
    """The recorded status of the running project (ports, ...): {} when it does not run."""
    project_id = uuid_option(options(args), "project_id")
    await require_project(ctx, project_id, "read")
    project = await _project_row(ctx, project_id)
    if _current_state(project)["state"] != "running":
        return {}
    recorded = project.get("status")
    return dict(recorded) if isinstance(recorded, dict) else {}


def _relative_path(opts: dict[str, Any], name: str, *, required: bool = True) -> str:
    path = string_option(opts, name, max_length=4096, default=None if required else "")
    if required and not path:
        raise ApiError(f"'{name}' must be a non-empty path")
    if path.startswith(("/", "~")) or ".." in posixpath.normpath(path or ".").split("/"):
        raise ApiError(
            f"'{name}' must be a path inside the project's home (relative, without '..' and "
            "without '~')"
        )
    return path


async def _call_project(ctx: Context, project_id: str, name: str, arg: Any, timeout: float) -> Any:
    subject = P.project_api_subject(project_id)
    try:
        reply = await ctx.request(subject, {"name": name, "args": [arg]}, timeout)
    except NoSubscribers:
        raise ApiError(
            f"project {project_id} is not running (nothing answers on {subject}); start it "
            "first (projects.start). Nothing was done.",
            503,
        ) from None
    except ConatError as e:
        raise ApiError(f"the project did not answer: {e.message}", 504) from None
    _raise_refusal(reply, "the project refused: ")
    return reply


async def exec_command(ctx: Context, *args: Any) -> Any:
    """Run a command in the project (owners and collaborators), with a timeout (s) and an
    output cap (bytes)."""
    opts = options(args)
    project_id = uuid_option(opts, "project_id")
    command = string_option(opts, "command", max_length=100_000, required=True)
    if not command.strip():
        raise ApiError("'command' must not be empty")
    cmd_args = opts.get("args", [])
    if not isinstance(cmd_args, list) or not all(isinstance(a, str) for a in cmd_args):
        raise ApiError("'args' must be a list of strings")
    if len(cmd_args) > 1000 or sum(len(a) for a in cmd_args) > 100_000:
        raise ApiError("'args' is too long (at most 1000 arguments, 100000 characters)")
    timeout = int_option(
        opts,
        "timeout",
        default=P.PROJECT_EXEC_TIMEOUT_DEFAULT_S,
        minimum=1,
        maximum=P.PROJECT_EXEC_TIMEOUT_MAX_S,
    )
    max_output = int_option(
        opts,
        "max_output",
        default=P.PROJECT_EXEC_OUTPUT_DEFAULT,
        minimum=1,
        maximum=P.PROJECT_EXEC_OUTPUT_MAX,
    )
    path = _relative_path(opts, "path", required=False)
    bash = bool_option(opts, "bash")
    err_on_exit = bool_option(opts, "err_on_exit", default=True)
    assert timeout is not None
    await require_project(ctx, project_id, "write")
    request = {
        "command": command,
        "args": cmd_args,
        "timeout": timeout,
        "max_output": max_output,
        "path": path,
        "bash": bash,
        "err_on_exit": err_on_exit,
    }
    return await _call_project(ctx, project_id, "system.exec", request, timeout + 5)


async def write_text_file(ctx: Context, *args: Any) -> None:
    """Write a text file into the project (owners and collaborators)."""
    opts = options(args)
    project_id = uuid_option(opts, "project_id")
    path = _relative_path(opts, "path")
    content = opts.get("content")
    if not isinstance(content, str):
        raise ApiError("'content' must be a string (the text of the file)")
    if len(content.encode()) > P.PROJECT_FILE_MAX_BYTES:
        raise ApiError(f"'content' is larger than {P.PROJECT_FILE_MAX_BYTES} bytes")
    await require_project(ctx, project_id, "write")
    await _call_project(
        ctx,
        project_id,
        "system.writeTextFileToProject",
        {"path": path, "content": content},
        30,
    )


async def copy_path_between_projects(ctx: Context, *args: Any) -> None:
    """Copy a path from one project to another (or within one): read access to the source
    (a viewer may copy out what they can read), write access to the target. The runner
    copies between the homes, confined to both; neither project needs to be running."""
    opts = options(args)
    src_project_id = uuid_option(opts, "src_project_id")
    src_path = _relative_path(opts, "src_path")
    target_project_id = (
        uuid_option(opts, "target_project_id")
        if opts.get("target_project_id") is not None
        else src_project_id
    )
    target_path = _relative_path(opts, "target_path", required=False) or src_path
    ctx.caller.require_account()
    await require_project(ctx, src_project_id, "read")
    await require_project(ctx, target_project_id, "write")
    request = {
        "src_project_id": src_project_id,
        "src_path": src_path,
        "target_project_id": target_project_id,
        "target_path": target_path,
    }
    try:
        await _call_runner(ctx, "copy", request, COPY_TIMEOUT_S)
    except NoSubscribers:
        raise ApiError(f"cannot copy {src_path!r}: {NO_RUNNER}. Nothing was copied.", 503) from None


FUNCTIONS: dict[str, ApiFunction] = {
    "start": start,
    "stop": stop,
    "state": state,
    "status": status,
    "exec": exec_command,
    "writeTextFile": write_text_file,
    "copyPathBetweenProjects": copy_path_between_projects,
}
