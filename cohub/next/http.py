"""JSON request and response helpers for /api/v2."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

MAX_BODY_BYTES = 1_000_000


class HttpError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object body; HttpError for anything else."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HttpError(f"request body is larger than {MAX_BODY_BYTES} bytes", 413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HttpError(f"request body is larger than {MAX_BODY_BYTES} bytes", 413)
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HttpError("request body must be JSON") from None
    if not isinstance(data, dict):
        raise HttpError("request body must be a JSON object")
    return data


def field(body: dict[str, Any], name: str, *, max_length: int = 1024, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise HttpError(f"'{name}' must be a string")
    if len(value) > max_length:
        raise HttpError(f"'{name}' is longer than {max_length} characters")
    return value
