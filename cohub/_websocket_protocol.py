"""uvicorn's sans-I/O websocket protocol, with writes coalesced per event-loop iteration.

A Conat delivery is two websocket frames (the socket.io header and the binary chunk), and a
publish costs an ack besides: written one by one, each frame is a ``send`` system call, which
profiling showed to be a third of the router's CPU. Here frames queue in the websocket
buffer (framed here: the websockets library's generic framing was the next largest cost) and
are written together once the loop has run everything that is
ready, so a burst of messages to one client costs one system call. Order is unchanged: every
write, ours or uvicorn's (pings, close), takes the whole buffer in sequence. The first two
frames of a loop iteration are written at once instead: on a quiet loop, that is a lone
delivery, whose latency matters more than a system call.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State
from websockets.speedups import apply_mask

from ._websocket_frames import frame_header, payload_length


class CoalescingWebSocketProtocol(WebSocketsSansIOProtocol):
    _flush_scheduled = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._out: list[bytes] = []  # framed data waiting for the next flush
        self._fast = False  # parsing data frames here instead of in the websockets library
        self._inbuf = bytearray()
        self._queued_bytes = 0  # payload bytes of the received messages the app has not taken

    # Receiving: once the handshake is done, complete unfragmented text and binary frames (all
    # a socket.io client sends) are parsed here; the websockets library's general parser was
    # the largest remaining cost per message. Anything else (a control or fragmented frame, a
    # frame too big) hands the stream back to the library, at a frame boundary, for good.
    def data_received(self, data: bytes) -> None:
        if self._fast:
            self._receive_frames(data)
            return
        super().data_received(data)
        if (
            self.handshake_complete
            and self.conn.state is State.OPEN
            and not self.conn.reader.buffer
            and not self.close_sent
        ):
            self._fast = True

    def _receive_frames(self, data: bytes) -> None:
        buf = self._inbuf
        buf += data  # a bytearray: a big frame arriving in many reads is not copied each time
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            sized = payload_length(buf, pos, n)
            if sized is None:
                break
            length, head = sized
            if (
                (b0 & 0xF0) != 0x80  # not final, or reserved bits set
                or (b0 & 0x0F) not in (0x1, 0x2)  # not text or binary
                or not b1 & 0x80  # clients must mask
                or length > self.config.ws_max_size
            ):
                rest = bytes(buf[pos:])
                self._fast, self._inbuf = False, bytearray()
                super().data_received(rest)
                return
            start = pos + head + 4
            end = start + length
            if end > n:
                break
            payload = apply_mask(bytes(buf[start:end]), bytes(buf[pos + head : start]))
            pos = end
            if self.close_sent:
                continue
            if b0 & 0x0F == 0x1:
                self.curr_msg_data_type = "text"
            else:
                self.curr_msg_data_type = "bytes"
            self.frames = [payload]
            self.send_receive_event_to_app()
            if self.transport.is_closing():
                return
        del buf[:pos]

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
        if self.conn.state is not State.OPEN:
            raise ClientDisconnected()
        data = message.get("bytes")
        if data is not None:
            self._out.append(frame_header(0x2, len(data)))
            self._out.append(data)
        else:
            payload = message.get("text", "").encode()
            self._out.append(frame_header(0x1, len(payload)))
            self._out.append(payload)
        global _frames_this_iteration
        if _frames_this_iteration < _WRITE_THROUGH_FRAMES and not self._flush_scheduled:
            # A quiet loop: the first frames of an iteration go out at once, since waiting for
            # the iteration's end cost a lone request/reply about 100 us (bench/conat.py, A/B).
            # Past them, writes coalesce; order holds, as nothing of this connection is queued.
            if _frames_this_iteration == 0:
                self.loop.call_soon(_new_iteration)
            _frames_this_iteration += 1
            self._flush()
            return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    # Reading: uvicorn pauses the transport after every received message and resumes it when the
    # app has taken it, two epoll changes per frame (four per publish). Pause only when the app
    # falls behind by a window of messages, or of bytes (64 frames of 8 MB would be 512 MB held
    # for a client that stops reading its deliveries while it publishes), instead.
    def send_receive_event_to_app(self) -> None:
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return  # past websocket.close: keep reading only for the peer's close reply
        if self.curr_msg_data_type == "text":
            try:
                text = data.decode()
            except UnicodeDecodeError:
                self.logger.info("invalid UTF-8 in a websocket text frame; closing")
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
            self.queue.put_nowait({"type": "websocket.receive", "text": text})
            self._queued_bytes += len(text)
        else:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": data})
            self._queued_bytes += len(data)
        if not self.read_paused and (
            self.queue.qsize() >= _READ_HIGH_WATER or self._queued_bytes >= _READ_HIGH_BYTES
        ):
            self.read_paused = True
            self.transport.pause_reading()

    async def receive(self) -> Any:
        message = await self.queue.get()
        if message["type"] == "websocket.receive":
            # counted in the same unit as above: bytes, or characters of a text frame
            data = message.get("bytes")
            self._queued_bytes -= len(data) if data is not None else len(message["text"])
        if (
            self.read_paused
            and self.queue.qsize() <= _READ_LOW_WATER
            and self._queued_bytes <= _READ_LOW_BYTES
        ):
            self.read_paused = False
            self.transport.resume_reading()
        return message

    def _flush(self) -> None:
        self._flush_scheduled = False
        output = self._out
        self._out = []
        output.extend(self.conn.data_to_send())  # a close frame queued by uvicorn goes last
        if output and not self.transport.is_closing():
            self.transport.write(b"".join(output))


_WRITE_THROUGH_FRAMES = 2  # one delivery (header + chunk); the third frame on waits (acks)
_frames_this_iteration = 0


def _new_iteration() -> None:
    global _frames_this_iteration
    _frames_this_iteration = 0


_READ_HIGH_WATER = 64  # received messages waiting for the app before reading pauses
_READ_LOW_WATER = 16
_READ_HIGH_BYTES = 16 * 1024 * 1024  # two full-size chunks; a socket.io frame is at most 8 MB
_READ_LOW_BYTES = 4 * 1024 * 1024
