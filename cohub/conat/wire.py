"""Engine.IO v4 and Socket.IO v4 packets over websocket frames. No I/O.

Only what a websocket-only server needs: the open, ping/pong, close and message packets of
Engine.IO, and the connect, disconnect, event, ack and binary event/ack packets of
Socket.IO on the default namespace. Binary arguments travel as separate binary frames and
are referenced in the JSON by ``{"_placeholder": true, "num": i}``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Final

# Engine.IO packet types (first character of a text frame)
EIO_OPEN: Final = "0"
EIO_CLOSE: Final = "1"
EIO_PING: Final = "2"
EIO_PONG: Final = "3"
EIO_MESSAGE: Final = "4"
EIO_UPGRADE: Final = "5"
EIO_NOOP: Final = "6"

# Socket.IO packet types (first character after the Engine.IO message type)
CONNECT: Final = 0
DISCONNECT: Final = 1
EVENT: Final = 2
ACK: Final = 3
CONNECT_ERROR: Final = 4
BINARY_EVENT: Final = 5
BINARY_ACK: Final = 6

MAX_ATTACHMENTS: Final = 16  # a Conat event carries one binary argument; refuse floods
_MAX_ACK_ID_DIGITS: Final = 15

Frame = str | bytes

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads


class ProtocolError(ValueError):
    """A frame that is not valid Engine.IO/Socket.IO; the connection should be closed."""


@dataclass(slots=True)
class Packet:
    """A decoded Socket.IO packet. ``data`` is the JSON payload (a list for events/acks)."""

    type: int
    namespace: str = "/"
    id: int | None = None
    data: Any = None
    attachments: int = 0
    buffers: list[bytes] = field(default_factory=list)
    buffered: int = 0  # bytes in ``buffers``

    @property
    def complete(self) -> bool:
        return len(self.buffers) >= self.attachments

    def add_attachment(self, data: bytes) -> bool:
        """Add one binary frame; True when the packet is complete (placeholders filled)."""
        self.buffers.append(data)
        self.buffered += len(data)
        if len(self.buffers) < self.attachments:
            return False
        if self.attachments != 1 or not (
            _fill_publish_chunk(self.data, data) or _fill_delivery_chunk(self.data, data)
        ):
            self.data = _fill(self.data, self.buffers)
        return True


def decode_message(text: str) -> Packet:
    """Decode the Socket.IO packet inside an Engine.IO message (the text after ``4``)."""
    if not text or not "0" <= text[0] <= "6":
        raise ProtocolError(f"unknown socket.io packet type {text[:1]!r}")
    ptype = ord(text[0]) - 48
    i, n = 1, len(text)
    attachments = 0
    if ptype in (BINARY_EVENT, BINARY_ACK):
        dash = text.find("-", 1, 1 + 6)
        if dash < 0 or not text[1:dash].isdigit():
            raise ProtocolError("binary packet without an attachment count")
        attachments = int(text[1:dash])
        if attachments > MAX_ATTACHMENTS:
            raise ProtocolError(f"{attachments} binary attachments announced")
        i = dash + 1
    namespace = "/"
    if i < n and text[i] == "/":
        comma = text.find(",", i)
        if comma < 0:
            namespace, i = text[i:], n
        else:
            namespace, i = text[i:comma], comma + 1
    start = i
    while i < n and "0" <= text[i] <= "9":
        i += 1
    if i - start > _MAX_ACK_ID_DIGITS:
        raise ProtocolError("ack id too long")
    ack_id = int(text[start:i]) if i > start else None
    data: Any = None
    if i < n:
        try:
            data = _loads(text[i:])
        except (ValueError, RecursionError) as e:
            raise ProtocolError(f"packet payload is not JSON: {e}") from None
    if ptype in (ACK, BINARY_ACK):
        if not isinstance(data, list):
            raise ProtocolError("an ack must carry a JSON array")
    packet = Packet(ptype, namespace, ack_id, data, attachments)
    if attachments == 0 and ptype in (BINARY_EVENT, BINARY_ACK):
        packet.data = _fill(data, [])
    return packet


def _fill_publish_chunk(data: Any, chunk: bytes) -> bool:
    """The hot path: ``["publish", [subject, id, seq, done, encoding, <chunk>, ...]]`` whose only
    placeholder is the chunk. True when it was filled in place."""
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[1], list)):
        return False
    frame = data[1]
    if len(frame) < 6 or frame[5] != _PLACEHOLDER or len(frame) > 8:
        return False
    # fields 0-4 must be scalars (the router refuses anything else); only the headers and the
    # delivery targets could hide another placeholder
    if len(frame) > 6 and any(_has_placeholder(v) for v in frame[6:]):
        return False
    frame[5] = chunk
    return True


def _fill_delivery_chunk(data: Any, chunk: bytes) -> bool:
    """The client's hot path: a delivery ``[pattern, {subject, data: [id, seq, done, encoding,
    <chunk>, headers]}]`` whose only placeholder is the chunk. True when filled in place."""
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[1], dict)):
        return False
    body = data[1]
    frame = body.get("data")
    if not isinstance(frame, list) or not 5 <= len(frame) <= 6 or frame[4] != _PLACEHOLDER:
        return False
    if len(body) != 2 or "subject" not in body or _has_placeholder(body["subject"]):
        return False
    if any(_has_placeholder(v) for v in frame[:4]) or (
        len(frame) > 5 and _has_placeholder(frame[5])
    ):
        return False
    frame[4] = chunk
    return True


def _has_placeholder(value: Any) -> bool:
    if isinstance(value, dict):
        return "_placeholder" in value or any(_has_placeholder(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_placeholder(v) for v in value)
    return False


def decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("invalid base64 binary message") from None


def _fill(data: Any, buffers: list[bytes]) -> Any:
    """Replace placeholders by their binary attachments."""
    if isinstance(data, list):
        return [_fill(v, buffers) for v in data]
    if isinstance(data, dict):
        if data.get("_placeholder") is True and "num" in data:
            num = data["num"]
            if type(num) is not int or not 0 <= num < len(buffers):
                raise ProtocolError(f"placeholder refers to missing attachment {num!r}")
            return buffers[num]
        return {k: _fill(v, buffers) for k, v in data.items()}
    return data


def _extract(data: Any, buffers: list[bytes]) -> Any:
    """Replace bytes by placeholders, collecting them in ``buffers``."""
    if isinstance(data, bytes | bytearray | memoryview):
        buffers.append(bytes(data))
        return {"_placeholder": True, "num": len(buffers) - 1}
    if isinstance(data, list | tuple):
        return [_extract(v, buffers) for v in data]
    if isinstance(data, dict):
        return {k: _extract(v, buffers) for k, v in data.items()}
    return data


def _has_binary(value: Any) -> bool:
    if isinstance(value, bytes | bytearray | memoryview):
        return True
    if isinstance(value, dict):
        return any(_has_binary(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_binary(v) for v in value)
    return False


def _extract_publish(payload: list[Any], buffers: list[bytes]) -> Any:
    """The client's hot path: ``["publish", [subject, id, seq, done, encoding, <chunk>,
    headers?]]`` whose only binary part is the chunk; None when the payload is anything else."""
    if len(payload) != 2 or payload[0] != "publish" or not isinstance(payload[1], list):
        return None
    frame = payload[1]
    if not 6 <= len(frame) <= 7 or not isinstance(frame[5], bytes):
        return None
    if _has_binary(frame[:5]) or (len(frame) > 6 and _has_binary(frame[6])):
        return None
    buffers.append(frame[5])
    return ["publish", [*frame[:5], _PLACEHOLDER, *frame[6:]]]


def _encode(ptype: int, binary_type: int, ack_id: int | None, payload: list[Any]) -> list[Frame]:
    buffers: list[bytes] = []
    body = _extract_publish(payload, buffers)
    if body is None:
        body = _extract(payload, buffers)
    ident = "" if ack_id is None else str(ack_id)
    if buffers:
        return [f"4{binary_type}{len(buffers)}-{ident}{_dumps(body)}", *buffers]
    return [f"4{ptype}{ident}{_dumps(body)}"]


def encode_event(event: str, args: list[Any], ack_id: int | None = None) -> list[Frame]:
    """The frames of an event (a text frame, then one binary frame per bytes argument)."""
    return _encode(EVENT, BINARY_EVENT, ack_id, [event, *args])


def encode_ack(ack_id: int, args: list[Any]) -> list[Frame]:
    return _encode(ACK, BINARY_ACK, ack_id, args)


def encode_count_ack(ack_id: int, count: int) -> str:
    """The publish ack ``[{"count": n}]``, the most frequent frame the router writes."""
    return f'43{ack_id}[{{"count":{count}}}]'


def encode_delivery(pattern: str, subject: str, data: list[Any]) -> list[Frame]:
    """A Conat delivery ``{subject, data: [id, seq, done, encoding, chunk, headers]}``, whose
    only binary part is the chunk. Built by hand: a generic JSON encode per delivery was a tenth
    of the router's CPU. The router has checked the types: id a string, seq and encoding ints,
    done 0/1 or a bool, headers a JSON object or null."""
    msg_id, seq, done, encoding, chunk, headers = data
    head = (
        f'451-[{_string(pattern)},{{"subject":{_string(subject)},"data":[{_string(msg_id)},'
        f"{seq:d},{_json_flag(done)},{encoding:d},"
        f'{{"_placeholder":true,"num":0}},{"null" if headers is None else _dumps(headers)}]}}]'
    )
    return [head, chunk]


_string: Final = json.encoder.encode_basestring  # C, and like _dumps it keeps non-ASCII as is


def _json_flag(value: int | bool) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    return "1" if value else "0"


_PLACEHOLDER: Final = {"_placeholder": True, "num": 0}


def open_packet(sid: str, ping_interval_ms: int, ping_timeout_ms: int, max_payload: int) -> str:
    return EIO_OPEN + _dumps(
        {
            "sid": sid,
            "upgrades": [],
            "pingInterval": ping_interval_ms,
            "pingTimeout": ping_timeout_ms,
            "maxPayload": max_payload,
        }
    )


def connect_packet(sid: str) -> str:
    return "40" + _dumps({"sid": sid})


def connect_error_packet(namespace: str, message: str) -> str:
    prefix = "" if namespace == "/" else namespace + ","
    return f"44{prefix}" + _dumps({"message": message})


DISCONNECT_PACKET: Final = "41"
