"""Stream configuration: the limits a stream enforces on every write, with their defaults.

The names, defaults and database encoding follow conat.md section 8; a stream stores only the
fields that differ from the defaults in its ``config`` table (field TEXT, value TEXT).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from ..conat.errors import BadRequest

DiscardPolicy = Literal["old", "new"]

EPHEMERAL_MAX_BYTES = 64_000_000  # an in-memory stream never holds more than this


@dataclass(frozen=True, slots=True)
class Config:
    """Limits of one stream. -1 (or 0 for max_age) means unlimited; times are milliseconds."""

    max_msgs: int = -1
    max_age: int = 0
    max_bytes: int = -1
    max_msg_size: int = -1
    max_bytes_per_second: int = -1
    max_msgs_per_second: int = -1
    discard_policy: DiscardPolicy = "old"
    allow_msg_ttl: bool = False
    desc: Any = None

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    def changed(self) -> dict[str, Any]:
        """Only the fields that differ from the defaults (what ``inventory`` reports)."""
        default = Config()
        return {k: v for k, v in asdict(self).items() if getattr(default, k) != v}


_INT_FIELDS = (
    "max_msgs",
    "max_age",
    "max_bytes",
    "max_msg_size",
    "max_bytes_per_second",
    "max_msgs_per_second",
)
FIELDS = tuple(f.name for f in fields(Config))


def _int_value(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"config.{name} must be a number, not {type(value).__name__}")
    if value != value or value in (float("inf"), float("-inf")):
        raise BadRequest(f"config.{name} must be finite")
    number = int(value)
    if number < -1:
        raise BadRequest(f"config.{name} must be -1 (unlimited) or a non-negative number")
    return number


def merge(current: Config, update: object) -> Config:
    """``current`` with the fields of a client's partial config applied; BadRequest on junk.

    A ``None`` value leaves the field as it is, as in the reference.
    """
    if update is None:
        return current
    if not isinstance(update, dict):
        raise BadRequest("config must be an object")
    values = asdict(current)
    for name, value in update.items():
        if name not in FIELDS:
            raise BadRequest(f"unknown config field {name!r}; known: {', '.join(FIELDS)}")
        if value is None:
            continue
        if name in _INT_FIELDS:
            values[name] = _int_value(name, value)
        elif name == "discard_policy":
            if value not in ("old", "new"):
                raise BadRequest("config.discard_policy must be 'old' or 'new'")
            values[name] = value
        elif name == "allow_msg_ttl":
            if not isinstance(value, bool):
                raise BadRequest("config.allow_msg_ttl must be true or false")
            values[name] = value
        else:  # desc: any JSON-able value
            try:
                json.dumps(value)
            except (TypeError, ValueError) as e:
                raise BadRequest(f"config.desc must be JSON-able: {e}") from None
            values[name] = value
    return Config(**values)


def to_db(config: Config) -> dict[str, str]:
    """The config table rows for the fields that differ from the defaults."""
    rows: dict[str, str] = {}
    for name, value in config.changed().items():
        if name == "allow_msg_ttl":
            rows[name] = "true" if value else "false"
        elif name == "desc":
            rows[name] = json.dumps(value)
        else:
            rows[name] = str(value)
    return rows


def from_db(rows: dict[str, str]) -> Config:
    """Parse config table rows; unknown or unparsable fields are ignored (defaults apply)."""
    values: dict[str, Any] = {}
    for name, text in rows.items():
        try:
            if name in _INT_FIELDS:
                values[name] = int(float(text))
            elif name == "discard_policy":
                values[name] = "new" if text == "new" else "old"
            elif name == "allow_msg_ttl":
                values[name] = text == "true"
            elif name == "desc":
                values[name] = json.loads(text)
        except ValueError:
            continue
    return Config(**values)
