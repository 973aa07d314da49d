"""/api/v2 operations that go through the hub API: api-keys, projects, collaborators, exec,
write-text-file, and the bridge that calls any hub API function with an API key.

Each handler names the hub API function it calls; the hub checks the caller's rights.
"""

from __future__ import annotations

from typing import Any

from .http import HttpError
from .hub_client import HubClient
from .identity import Who
from .spec import (
    BOOL,
    INT,
    NULLABLE_TIME,
    OK,
    STRING,
    TIME,
    UUID,
    Call,
    Handler,
    Operation,
    array,
    obj,
)

API_KEY = obj(
    {
        "id": INT,
        "account_id": UUID,
        "project_id": {"type": ["string", "null"]},
        "name": STRING,
        "trunc": STRING,
        "created": TIME,
        "expire": NULLABLE_TIME,
        "last_active": NULLABLE_TIME,
        "secret": {"type": "string", "description": "the key itself; only when created"},
    },
    ("id", "name", "trunc"),
)
PROJECT_SUMMARY = obj(
    {
        "project_id": UUID,
        "title": STRING,
        "description": STRING,
        "group": {"type": ["string", "null"]},
    },
    ("project_id", "title"),
)
COLLABORATOR = obj(
    {
        "account_id": UUID,
        "group": {"type": "string", "enum": ["owner", "collaborator", "viewer"]},
        "first_name": STRING,
        "last_name": STRING,
    },
    ("account_id", "group"),
)
PROJECT_ID = obj({"project_id": UUID}, ("project_id",))
PROJECT_AND_ACCOUNT = obj({"project_id": UUID, "account_id": UUID}, ("project_id", "account_id"))


def _who(call: Call) -> Who:
    assert call.who is not None  # the route checked it
    return call.who


def operations(hub: HubClient) -> list[Operation]:
    def forward(name: str, fields: tuple[str, ...], ok: bool = False) -> Handler:
        """A handler calling hub function ``name`` with the named body fields."""

        async def run(call: Call) -> Any:
            opts = {k: call.body[k] for k in fields if k in call.body}
            result = await hub.call(_who(call), name, [opts])
            return {"status": "ok"} if ok else result

        return run

    async def api_keys(call: Call) -> Any:
        fields = ("action", "project_id", "name", "expire", "id")
        opts = {k: call.body[k] for k in fields if k in call.body}
        return {"response": await hub.call(_who(call), "system.manageApiKeys", [opts])}

    async def create(call: Call) -> Any:
        opts = {k: call.body[k] for k in ("title", "description") if k in call.body}
        return {"project_id": await hub.call(_who(call), "projects.createProject", [opts])}

    async def get(call: Call) -> Any:
        who = _who(call)
        if call.body.get("project_id") is not None:
            project = await hub.call(who, "projects.get", [{"project_id": call.body["project_id"]}])
            group = project.get("users", {}).get(who.id) if who.kind == "account" else None
            keys = ("project_id", "title", "description", "created", "last_edited", "state")
            return [{**{k: project.get(k) for k in keys}, "group": group}]
        opts = {k: call.body[k] for k in ("account_id", "limit") if k in call.body}
        return await hub.call(who, "projects.list", [opts])

    async def stop(call: Call) -> Any:
        opts = {"project_id": call.body.get("project_id")}
        state = await hub.call(_who(call), "projects.stop", [opts])
        return {"status": "ok", "state": state}

    async def bridge(call: Call) -> Any:
        name = call.body.get("name")
        args = call.body.get("args", [])
        timeout = call.body.get("timeout", 30_000)
        if not isinstance(name, str):
            raise HttpError("'name' must be the hub API function, e.g. 'system.ping'")
        if not isinstance(args, list):
            raise HttpError("'args' must be a list")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise HttpError("'timeout' must be a number of milliseconds")
        timeout_s = min(max(float(timeout) / 1000, 1.0), 300.0)
        return await hub.call(_who(call), name, args, timeout=timeout_s)

    api = "api/v2/"
    projects = "Projects"
    return [
        Operation(
            api + "api-keys",
            "manageApiKeys",
            "Create, list, edit or delete API keys of your account or of a project",
            "API keys",
            api_keys,
            request=obj(
                {
                    "action": {"type": "string", "enum": ["get", "create", "delete", "edit"]},
                    "project_id": UUID,
                    "name": STRING,
                    "expire": {"type": ["string", "integer", "null"]},
                    "id": INT,
                },
                ("action",),
            ),
            response=obj(
                {"response": {"anyOf": [array(API_KEY), {"type": "null"}]}}, ("response",)
            ),
            errors=(403, 404),
            description="Keys look like sk-<random><id>; only a hash is stored. A project key "
            "acts as that project while its creator is an owner or collaborator.",
        ),
        Operation(
            api + "projects/create",
            "createProject",
            "Create a project owned by you",
            projects,
            create,
            request=obj(
                {
                    "title": {"type": ["string", "null"], "description": "null: Untitled"},
                    "description": {"type": ["string", "null"], "description": "null: empty"},
                }
            ),
            response=obj({"project_id": UUID}, ("project_id",)),
            errors=(403,),
            description="A missing or null title is 'Untitled'; a missing or null description "
            "is empty.",
        ),
        Operation(
            api + "projects/get",
            "getProjects",
            "Your projects (or one, by project_id); admins may give account_id",
            projects,
            get,
            request=obj({"project_id": UUID, "account_id": UUID, "limit": INT}),
            response=array(PROJECT_SUMMARY),
            errors=(403, 404),
        ),
        Operation(
            api + "projects/start",
            "startProject",
            "Start a project (owners and collaborators)",
            projects,
            forward("projects.start", ("project_id",), ok=True),
            request=PROJECT_ID,
            response=OK,
            errors=(403, 404, 409),
            description="The project runner creates the project's home, writes its secret "
            "token and starts its project server, waiting up to 20 s until it serves. Starting a "
            "running project changes nothing. With no runner (`--project-runner none`) the "
            "attempt is recorded in the project's state and the reply is a 503 error saying so.",
        ),
        Operation(
            api + "projects/stop",
            "stopProject",
            "Stop a project (owners and collaborators)",
            projects,
            stop,
            request=PROJECT_ID,
            response=obj({"status": STRING, "state": {"type": "object"}}, ("status",)),
            errors=(403, 404),
        ),
        Operation(
            api + "projects/delete",
            "deleteProject",
            "Mark a project deleted (its owner or an admin)",
            projects,
            forward("projects.deleteProject", ("project_id",), ok=True),
            request=PROJECT_ID,
            response=OK,
            errors=(403, 404),
        ),
        Operation(
            api + "projects/collaborators/add",
            "addCollaborator",
            "Add an account to a project (owners and collaborators)",
            projects,
            forward("projects.addCollaborator", ("project_id", "account_id"), ok=True),
            request=PROJECT_AND_ACCOUNT,
            response=OK,
            errors=(403, 404),
        ),
        Operation(
            api + "projects/collaborators/remove",
            "removeCollaborator",
            "Remove an account from a project; owners cannot be removed, anyone may leave",
            projects,
            forward("projects.removeCollaborator", ("project_id", "account_id"), ok=True),
            request=PROJECT_AND_ACCOUNT,
            response=OK,
            errors=(403, 404),
        ),
        Operation(
            api + "projects/collaborators/list",
            "listCollaborators",
            "The people on a project (anyone on it, or an admin)",
            projects,
            forward("projects.listCollaborators", ("project_id",)),
            request=PROJECT_ID,
            response=array(COLLABORATOR),
            errors=(403, 404),
        ),
        Operation(
            api + "exec",
            "exec",
            "Run a command in a project, with a timeout (s) and an output cap (bytes)",
            projects,
            forward(
                "projects.exec",
                (
                    "project_id",
                    "command",
                    "args",
                    "timeout",
                    "max_output",
                    "path",
                    "bash",
                    "err_on_exit",
                ),
            ),
            request=obj(
                {
                    "project_id": UUID,
                    "command": STRING,
                    "args": array(STRING),
                    "timeout": INT,
                    "max_output": INT,
                    "path": STRING,
                    "bash": BOOL,
                    "err_on_exit": BOOL,
                },
                ("project_id", "command"),
            ),
            response={"type": "object"},
            errors=(403, 404, 502),
            description="The command runs in the project's home, as the project's own user "
            "when the hub runs as root, with the timeout (seconds, at most 3600) and output cap "
            "(bytes) given. The project must be running (projects/start); otherwise, or with no "
            "project runner, the reply is a 503 error saying so.",
        ),
        Operation(
            api + "projects/write-text-file",
            "writeTextFile",
            "Write a text file into a project (owners and collaborators)",
            projects,
            forward("projects.writeTextFile", ("project_id", "path", "content"), ok=True),
            request=obj(
                {"project_id": UUID, "path": STRING, "content": STRING},
                ("project_id", "path", "content"),
            ),
            response=OK,
            errors=(403, 404, 502),
            description="The path is relative to the project's home and may not leave it. "
            "Needs the running project (projects/start); otherwise a 503 error says so.",
        ),
        Operation(
            "api/conat/hub",
            "hubBridge",
            "Call any hub API function (API key only; cookies are refused)",
            "Hub API",
            bridge,
            auth="key",
            request=obj(
                {
                    "name": {"type": "string", "description": "e.g. system.getNames"},
                    "args": {"type": "array"},
                    "timeout": {"type": "number", "description": "milliseconds"},
                },
                ("name",),
            ),
            response={},
            errors=(403, 404, 409, 429, 502),
            description="Requests {name, args} on hub.<account|project>.<id>.api as the "
            "key's account or project; the reply is the function's result.",
        ),
    ]
