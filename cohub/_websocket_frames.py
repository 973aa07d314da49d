"""RFC 6455 frame headers, shared by the server (cohub/_websocket_protocol.py) and the Conat
client's websocket end (cohub/conat/_websocket.py). No I/O."""

from __future__ import annotations

import struct

_HEADER16 = struct.Struct("!BBH")
_HEADER64 = struct.Struct("!BBQ")


def payload_length(buf: bytearray, pos: int, n: int) -> tuple[int, int] | None:
    """The payload length of the frame starting at ``buf[pos]`` and the size of its header
    before any masking key; None while ``buf[:n]`` does not hold the whole length yet."""
    length = buf[pos + 1] & 0x7F
    if length == 126:
        if n - pos < 4:
            return None
        return int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
    if length == 127:
        if n - pos < 10:
            return None
        return int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
    return length, 2


def frame_header(opcode: int, length: int, *, masked: bool = False) -> bytes:
    """The header of a final frame; ``masked`` sets the mask bit (the key follows it)."""
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return bytes((0x80 | opcode, mask_bit | length))
    if length < 65536:
        return _HEADER16.pack(0x80 | opcode, mask_bit | 126, length)
    return _HEADER64.pack(0x80 | opcode, mask_bit | 127, length)
