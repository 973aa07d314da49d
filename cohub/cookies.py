"""Cookie names and parsing shared by the router, the proxy and the pages."""

from __future__ import annotations

from urllib.parse import quote, unquote

REMEMBER_ME = "remember_me"
API_KEY = "api_key"
HUB_PASSWORD = "hub_password"
PROJECT_SECRET = "project_secret"
PROJECT_ID = "project_id"
SYSTEM = "sys"  # never prefixed


def cookie_name(base_path: str, name: str) -> str:
    """Cookie names carry the URI-encoded base path as a prefix when it is not ``/``."""
    trimmed = base_path.rstrip("/") or "/"
    return name if len(trimmed) <= 1 else quote(trimmed, safe="") + name


def parse_cookie_header(header: str) -> dict[str, str]:
    """Parse a Cookie header leniently (values URI-decoded, first occurrence wins)."""
    cookies: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if not sep or not name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies.setdefault(name, unquote(value))
    return cookies
