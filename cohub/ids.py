"""Identifier formats shared by every role."""

from __future__ import annotations

import re

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def is_uuid(value: object) -> bool:
    """True for a lower-case canonical UUID string; wildcards and anything else are not."""
    return isinstance(value, str) and bool(_UUID.match(value))
