"""Checks on API arguments."""

from __future__ import annotations

from typing import Any

from ..ids import is_uuid
from .context import ApiError


def uuid_option(opts: dict[str, Any], name: str) -> str:
    value = opts.get(name)
    if not is_uuid(value):
        raise ApiError(f"'{name}' must be a valid UUID")
    assert isinstance(value, str)
    return value
