"""uvicorn's sans-I/O websocket protocol, with writes coalesced per event-loop iteration.

A Conat delivery is two websocket frames (the socket.io header and the binary chunk), and a
publish costs an ack besides: written one by one, each frame is a ``send`` system call, which
profiling showed to be a third of the router's CPU. Here frames queue in the websocket
connection's buffer and are written together once the loop has run everything that is
ready, so a burst of messages to one client costs one system call. Order is unchanged: every
write, ours or uvicorn's (pings, close), takes the whole buffer in sequence.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class CoalescingWebSocketProtocol(WebSocketsSansIOProtocol):
    _flush_scheduled = False

    async def send(self, message: Any) -> None:
        if (
            message["type"] != "websocket.send"
            or not self.handshake_complete
            or self.close_sent
            or self.initial_response is not None
        ):
            self._flush()
            await super().send(message)
            return
        await self.writable.wait()  # flow control: wait while the transport is paused
        if self.disconnected:
            raise ClientDisconnected()
        data = message.get("bytes")
        if data is not None:
            self.conn.send_binary(data)
        else:
            self.conn.send_text(message.get("text", "").encode())
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        output = self.conn.data_to_send()
        if output and not self.transport.is_closing():
            self.transport.write(b"".join(output))
