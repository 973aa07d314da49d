"""Exceptions raised by the Conat client and router.

ConatError(message, code)          any error that carries a wire code
├── BadRequest            400      malformed event, payload, subject or encoding
├── Unauthorized          401      no valid identity on the connection
├── PermissionDenied      403      identity may not publish/subscribe to a subject
├── NotFound              404      unknown command or object
├── RequestTimeout        408      no reply within the timeout
├── TooMany               429      connection or subscription limit reached
├── ServiceError          500      a service answered with an error
├── NoSubscribers         503      nobody listens on the subject
└── ConnectionClosed      -1       the client was closed while waiting
"""

from __future__ import annotations

from typing import Any, ClassVar


class ConatError(Exception):
    default_code: ClassVar[int | str] = 500

    def __init__(self, message: str, code: int | str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code: int | str = self.default_code if code is None else code

    def to_wire(self) -> dict[str, Any]:
        return {"error": self.message, "code": self.code}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class BadRequest(ConatError):
    default_code = 400


class Unauthorized(ConatError):
    default_code = 401


class PermissionDenied(ConatError):
    default_code = 403


class NotFound(ConatError):
    default_code = 404


class RequestTimeout(ConatError):
    default_code = 408


class TooMany(ConatError):
    default_code = 429


class ServiceError(ConatError):
    default_code = 500


class NoSubscribers(ConatError):
    default_code = 503


class ConnectionClosed(ConatError):
    default_code = -1


_BY_CODE: dict[int | str, type[ConatError]] = {
    cls.default_code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        PermissionDenied,
        NotFound,
        RequestTimeout,
        TooMany,
        NoSubscribers,
    )
}


def from_wire(payload: dict[str, Any]) -> ConatError:
    """The exception for an ``{error, code}`` payload received over the wire."""
    code = payload.get("code")
    cls = _BY_CODE.get(code, ServiceError) if code is not None else ServiceError
    return cls(str(payload.get("error", "unknown error")), code)
