"""JSON request and response helpers for /api/v2.

Every endpoint takes POST with a JSON object body (an empty body counts as ``{}``); GET
parameters are ignored. A Content-Type other than application/json is refused (415): HTML
forms cannot send JSON, so a cookie-authenticated request can never come from another site's
form. Every error is ``{"error": message}``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

MAX_BODY_BYTES = 1_000_000
MAX_JSON_DEPTH = 64
MAX_SAFE_INTEGER = 2**53  # JavaScript's limit; larger numbers cannot be passed on exactly
NOT_SIGNED_IN = "must be signed in"


class HttpError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


_SURROGATE = re.compile("[\ud800-\udfff]")
NOT_UNICODE = (
    "the request body is not valid Unicode text: it contains a lone surrogate escape "
    "(\\ud800-\\udfff) that is not part of a pair"
)


def _check(value: Any, limit: int) -> None:
    """HttpError when ``value`` nests deeper than ``limit`` or holds a string (a key or a
    value) that is not valid Unicode (a lone surrogate, which no database or encoder takes)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise HttpError(f"request body is nested deeper than {limit} levels")
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise HttpError(NOT_UNICODE)
        elif isinstance(item, dict):
            for k, v in item.items():
                if _SURROGATE.search(k):
                    raise HttpError(NOT_UNICODE)
                stack.append((v, depth + 1))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


class _NumberOutOfRange(Exception):
    pass


def _bounded_int(text: str) -> int:
    if len(text) > 20 or abs(value := int(text)) > MAX_SAFE_INTEGER:
        raise _NumberOutOfRange
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NumberOutOfRange
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object body; HttpError for anything else."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise HttpError("send the body as JSON with 'Content-Type: application/json'", 415)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HttpError(f"request body is larger than {MAX_BODY_BYTES} bytes", 413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HttpError(f"request body is larger than {MAX_BODY_BYTES} bytes", 413)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        return {}
    try:
        data = json.loads(
            body, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant
        )
    except _NumberOutOfRange:
        raise HttpError(
            f"numbers in the request body must be between -{MAX_SAFE_INTEGER} and "
            f"{MAX_SAFE_INTEGER}"
        ) from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise HttpError("request body must be JSON") from None
    if not isinstance(data, dict):
        raise HttpError("request body must be a JSON object")
    _check(data, MAX_JSON_DEPTH)
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


Endpoint = Callable[[Request], Awaitable[Response]]


def endpoint(fn: Endpoint) -> Endpoint:
    """Turn HttpError into ``{error}`` responses."""

    async def run(request: Request) -> Response:
        try:
            return await fn(request)
        except HttpError as e:
            return error(e.message, e.status)

    return run
