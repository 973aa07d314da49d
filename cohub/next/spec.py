"""/api/v2 operations as data: each one is a route and an entry of the OpenAPI document.

An operation declares its path, its request and response schemas, whether it needs a
signed-in caller, and a handler ``(call) -> result``. ``routes()`` turns the list into
Starlette routes that all behave alike: POST only, a JSON object body, ``{error}`` on
failure, ``{error: "must be signed in"}`` (401) for a missing identity and ``{error: "invalid or
expired API key"}`` (401) for a key that is not valid.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..db.engine import Database
from .http import NOT_SIGNED_IN, HttpError, endpoint, json_body
from .identity import Who, identify

Auth = Literal["none", "optional", "required", "key"]


@dataclass(frozen=True, slots=True)
class Call:
    request: Request
    body: dict[str, Any]
    who: Who | None


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Operation:
    path: str  # below the base path, e.g. "api/v2/projects/create"
    operation_id: str
    summary: str
    tag: str
    handler: Handler
    auth: Auth = "required"
    request: dict[str, Any] = field(default_factory=lambda: obj({}))
    response: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    errors: tuple[int, ...] = ()
    description: str = ""


# ---- schema helpers ---------------------------------------------------------------------

STRING: dict[str, Any] = {"type": "string"}
UUID: dict[str, Any] = {"type": "string", "format": "uuid"}
BOOL: dict[str, Any] = {"type": "boolean"}
INT: dict[str, Any] = {"type": "integer"}
TIME: dict[str, Any] = {"type": "string", "description": "ISO 8601 time"}
NULLABLE_TIME: dict[str, Any] = {"type": ["string", "null"], "description": "ISO 8601 time"}
OK: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string", "enum": ["ok"]}},
}
ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
ERROR_TEXT = {
    400: "bad input",
    401: "must be signed in",
    403: "not allowed",
    404: "not found",
    405: "only POST",
    409: "conflict",
    413: "body too large",
    415: "body must be JSON",
    429: "too many attempts",
    502: "a project refused",
    503: "a service is not available (no project runner, email not configured, ...)",
    504: "timed out",
}
COMMON_ERRORS = (400, 413, 415, 503, 504)


def obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


# ---- routes -------------------------------------------------------------------------------


def routes(
    operations: list[Operation], db: Database, prefix: str, session_cookie: str
) -> list[BaseRoute]:
    def make(op: Operation) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            body = await json_body(request)
            who = None
            if op.auth != "none":
                who = await identify(db, request, session_cookie)
                if op.auth in ("required", "key") and who is None:
                    raise HttpError(NOT_SIGNED_IN, 401)
                if op.auth == "key" and who is not None and who.via != "key":
                    raise HttpError(
                        "this endpoint needs an API key (Authorization: Bearer <key>); "
                        "cookies are not accepted here",
                        401,
                    )
            result = await op.handler(Call(request, body, who))
            return result if isinstance(result, Response) else JSONResponse(result)

        return endpoint(run)

    return [Route(prefix + op.path, make(op), methods=["POST"]) for op in operations]


# ---- OpenAPI ------------------------------------------------------------------------------


def openapi(
    operations: list[Operation], prefix: str, title: str, session_cookie: str = "remember_me"
) -> dict[str, Any]:
    """The OpenAPI document; ``session_cookie`` is the real cookie name (it carries the base
    path when that is not /)."""
    paths: dict[str, Any] = {}
    for op in operations:
        statuses = sorted({*COMMON_ERRORS, *op.errors, *((401,) if op.auth != "none" else ())})
        responses: dict[str, Any] = {
            "200": {
                "description": "success",
                "content": {"application/json": {"schema": op.response}},
            }
        }
        for status in statuses:
            responses[str(status)] = {
                "description": ERROR_TEXT.get(status, "error"),
                "content": {"application/json": {"schema": ERROR}},
            }
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": op.request}},
            },
            "responses": responses,
        }
        if op.description:
            entry["description"] = op.description
        if op.auth == "key":
            entry["security"] = [{"bearer": []}, {"basic": []}]
        elif op.auth in ("required", "optional"):
            entry["security"] = [{"bearer": []}, {"basic": []}, {"cookie": []}]
        else:
            entry["security"] = []
        paths["/" + op.path] = {"post": entry}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": "2",
            "description": (
                "Every operation is POST with a JSON object body (GET parameters are ignored). "
                "Authenticate with an API key (Authorization: Bearer <key>, or Basic with the "
                f"key as the user name and an empty password) or the {session_cookie} cookie. "
                'Errors are {"error": message}; without an identity: '
                '{"error": "must be signed in"} (401); with a key that is not valid: '
                '{"error": "invalid or expired API key"} (401).'
            ),
        },
        "servers": [{"url": prefix.rstrip("/") or "/"}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API key"},
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "the API key as user name, empty password",
                },
                "cookie": {"type": "apiKey", "in": "cookie", "name": session_cookie},
            }
        },
    }
