"""A lean asyncio WebSocket client for load generation (benchmarks only; `RemoteEnv` is the
real client).

A load generator that holds thousands of sessions must cost far less per request than the
server it measures, or it measures itself: the `websockets` asyncio client runs a reader task,
a keepalive task and an assembler per connection and costs about as much CPU per request as
the server's step. `LeanWS` is one `asyncio.Protocol` per connection: a request is one masked
frame written to the transport, its reply resolves a future in `data_received` (the server
answers a connection's frames in order). It answers pings, fails its waiters when the
connection drops, and speaks exactly the wire protocol of `server.app`'s `/ws`.

    ws = await connect("127.0.0.1", 8000)
    reply = json.loads(await ws.request(json.dumps({"op": "create", "env_id": "arlarena/Sokoban-v0"})))
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections import deque

try:
    from websockets.speedups import apply_mask  # C
except ImportError:  # pragma: no cover - websockets without its extension

    def apply_mask(data: bytes, mask: bytes) -> bytes:
        n = len(data)
        return (int.from_bytes(data, "little") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "little")).to_bytes(n, "little")


class LeanWS(asyncio.Protocol):
    def __init__(self, host: str, port: int, path: str, headers: dict[str, str] | None = None):
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        key = base64.b64encode(os.urandom(16)).decode()
        self._hello = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode()
        self._buf = bytearray()
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiting: deque[asyncio.Future] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self._hello)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self.opened.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(ConnectionError("handshake refused: " + head.split(b"\r\n", 1)[0].decode(errors="replace")))
                assert self.transport is not None
                self.transport.close()
                return
            self.opened.set_result(None)
        while len(buf) >= 2:
            n, at = buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, at = struct.unpack_from("!H", buf, 2)[0], 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, at = struct.unpack_from("!Q", buf, 2)[0], 10
            if len(buf) < at + n:
                return
            op = buf[0] & 0x0F
            payload = bytes(buf[at : at + n])
            del buf[: at + n]
            if op in (1, 2):
                if self._waiting:
                    fut = self._waiting.popleft()
                    if not fut.done():
                        fut.set_result(payload)
            elif op == 9:
                self._frame(0xA, payload)  # pong
            elif op == 8:
                self._fail(ConnectionError(f"server closed the WebSocket ({payload[2:].decode(errors='replace')})"))
                assert self.transport is not None
                self.transport.close()

    def _frame(self, op: int, payload: bytes) -> None:
        n, mask = len(payload), os.urandom(4)
        if n < 126:
            head = struct.pack("!BB", 0x80 | op, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | op, 0xFE, n)
        else:
            head = struct.pack("!BBQ", 0x80 | op, 0xFF, n)
        assert self.transport is not None
        self.transport.write(head + mask + apply_mask(payload, mask))

    def request(self, text: str) -> asyncio.Future:
        """Send one request frame; the future resolves to the reply frame's bytes."""
        if self.lost is not None:
            raise ConnectionError(f"connection lost: {self.lost}")
        fut = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        self._frame(1, text.encode())
        return fut

    def _fail(self, exc: BaseException) -> None:
        self.lost = exc
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_exception(exc)
        if not self.opened.done():
            self.opened.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("connection closed"))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._frame(0x8, struct.pack("!H", 1000))
            self.transport.close()


async def connect(host: str, port: int, path: str = "/ws", *, timeout: float = 60.0, headers: dict[str, str] | None = None) -> LeanWS:
    loop = asyncio.get_running_loop()
    _, proto = await asyncio.wait_for(loop.create_connection(lambda: LeanWS(host, port, path, headers), host, port), timeout)
    await asyncio.wait_for(proto.opened, timeout)
    return proto
