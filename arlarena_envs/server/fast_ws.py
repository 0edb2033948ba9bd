"""The `/ws` endpoint without a per-frame ASGI round trip: a uvicorn WebSocket protocol that
answers request frames itself.

uvicorn's WebSocket protocols hand every frame to the app through ASGI: the frame goes on a
queue, reading pauses (an epoll unregister), the app's task wakes, `receive()` resumes reading
(an epoll register), and the reply goes back through `send()`; the app's idle timeout adds a
`wait_for` task per frame. For a Sokoban step that costs ~4x the step itself (measured by
`benchmarks/bench_server_workers.py`, which prints the server's CPU per step).

`FastWebSocketProtocol` is uvicorn's sans-I/O protocol (the same handshake, frame parser,
size limit, ping/pong keepalive and close handshake) with one change: on `/ws` it does not
start the ASGI app. It accepts the handshake (after the same token check as the app's `/ws`),
and answers each text/binary frame with the app's own request handling:

* a request the app would run on the event loop (a step of a fast env, not forwarded to another
  worker) is answered synchronously in `data_received`: parse, `handle_obj(inline=True)`,
  one `transport.write`;
* anything else (create/reset/oracle in threads, slow envs, requests for another worker's
  sessions, a session busy in a thread) goes to the connection's one responder task, which
  awaits the app's `run` exactly as the ASGI endpoint does. While it has work, later frames of
  the connection queue behind it (replies keep the request order) and reading pauses once a
  few frames wait, so a client cannot queue unbounded work.

Other paths (`/openenv/...` WebSockets) go through ASGI unchanged. The wire protocol, replies
and error codes are the app's: tests run the same client suite against both.

    uvicorn.Config(app, ws=fast_ws_protocol(app))
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame
from websockets.http11 import Request

log = logging.getLogger("arlarena.server")

FAST_PATH = "/ws"
MAX_QUEUED = 8  # frames waiting behind the responder before reading pauses


class FastWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, answering `/ws` frames itself (see module doc).
    `arl` (the app's hooks: manager, run, check_token, config) is set by `fast_ws_protocol`."""

    arl: dict[str, Any] = {}
    _ids = itertools.count()

    def handle_connect(self, event: Request) -> None:
        path = event.path.partition("?")[0]
        if path != FAST_PATH or not self.arl:
            super().handle_connect(event)  # other WebSocket routes: through the ASGI app
            return
        self.request = event
        self.response = self.conn.accept(event)
        self.handshake_initiated = True
        if self.response.status_code != 101:  # not a valid upgrade: the library's error reply
            self.handshake_complete = True
            self.close_sent = True
            self.conn.send_response(self.response)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()
            return
        self.fast = True
        self.authorized = self.arl["check_token"](event.headers.get("Authorization"))
        self.scope_id = f"ws-fast-{next(self._ids)}"  # creates without a client_id replay per connection
        self.pending: collections.deque[str | bytes] = collections.deque()
        self.responder: asyncio.Task | None = None
        self.write_paused = False
        del self.response.headers["Date"]
        self.response.headers.update([(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.default_headers])
        self.handshake_complete = True
        self.conn.send_response(self.response)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.start_keepalive()
        idle = self.arl["config"].ws_idle_timeout_s
        self.idle_s = idle
        self.last_frame = self.loop.time()
        self.idle_timer = self.loop.call_later(idle, self._idle_check) if idle else None

    # ------------------------------------------------------------------ frames

    def send_receive_event_to_app(self) -> None:
        if not getattr(self, "fast", False):
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return
        self.last_frame = self.loop.time()
        raw: str | bytes = data
        if self.curr_msg_data_type == "text":
            try:
                raw = bytes(data).decode("utf-8")
            except UnicodeDecodeError:  # the parser checks UTF-8 already; a last guard
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
        if not self.authorized:
            self._refuse(raw)
            return
        if self.responder is not None or self.pending:  # keep the order: behind the queued work
            self._enqueue(raw)
            return
        manager = self.arl["manager"]
        try:
            data_obj = manager.parse_text(raw)
            if isinstance(data_obj, tuple):
                self._reply(data_obj[1])
                return
            if self.arl["inline_ok"](data_obj):
                try:
                    self._reply(manager.handle_obj(data_obj, self.scope_id, inline=True)[1])
                    return
                except self.arl["needs_thread"]:
                    pass  # the session is busy in a thread: the responder waits for it
        except Exception as e:  # noqa: BLE001 - never drop the connection without a reply
            log.exception("websocket request failed")
            self._reply(self._internal(e))
            return
        self._enqueue(raw, parsed=data_obj)

    def _enqueue(self, raw: str | bytes, parsed: Any = None) -> None:
        self.pending.append((raw, parsed))  # type: ignore[arg-type]
        self._flow()
        if self.responder is None:
            self.responder = self.loop.create_task(self._respond())
            self.tasks.add(self.responder)
            self.responder.add_done_callback(self.tasks.discard)

    async def _respond(self) -> None:
        """Answer the queued frames in order (the app's `run`: threads, peers)."""
        manager, run = self.arl["manager"], self.arl["run"]
        try:
            while self.pending and not self.disconnected:
                raw, parsed = self.pending.popleft()
                self._flow()
                try:
                    data = parsed if parsed is not None else manager.parse_text(raw)
                    body = data[1] if isinstance(data, tuple) else (await run(data, self.scope_id))[1]
                except Exception as e:  # noqa: BLE001
                    log.exception("websocket request failed")
                    body = self._internal(e)
                self._reply(body)
        finally:
            self.responder = None
            self._flow()

    def _flow(self) -> None:
        """Read while the responder has few frames waiting and the client takes its replies
        (the transport's write buffer is under its high-water mark); else pause reading, so a
        client that sends without reading cannot make the server buffer without bound."""
        if self.close_sent or self.disconnected:
            return
        stop = len(self.pending) >= MAX_QUEUED or self.write_paused
        if stop and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
        elif not stop and self.read_paused and len(self.pending) < MAX_QUEUED // 2:
            self.read_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        super().pause_writing()
        if getattr(self, "fast", False):
            self.write_paused = True
            self._flow()

    def resume_writing(self) -> None:
        super().resume_writing()
        if getattr(self, "fast", False):
            self.write_paused = False
            self._flow()

    def _reply(self, body: str) -> None:
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return  # the client went away; its session stays (it may reconnect and replay)
        self.conn.send_text(body.encode())
        self.transport.write(b"".join(self.conn.data_to_send()))

    def _internal(self, e: BaseException) -> str:
        from arlarena_envs.server.messages import ErrorCode

        return self.arl["manager"]._fail(ErrorCode.INTERNAL, f"the server failed on this frame ({type(e).__name__})", None)[1]

    def _refuse(self, raw: str | bytes) -> None:
        """A connection without the token: its first request gets `unauthorized`, then 1008 (as
        the ASGI endpoint: closing before the reply would race with the client's send)."""
        from arlarena_envs.server.messages import REQUEST_ID_MAX, ErrorCode

        manager = self.arl["manager"]
        parsed = manager.parse_text(raw)
        rid = parsed.get("request_id") if isinstance(parsed, dict) else None
        rid = rid if isinstance(rid, str) and len(rid) <= REQUEST_ID_MAX else None
        _, body = manager._fail(ErrorCode.UNAUTHORIZED, "missing or wrong token: send 'Authorization: Bearer <token>'", rid)
        self._reply(body)
        self._close(1008, "")

    # ------------------------------------------------------------------ lifetime

    def _idle_check(self) -> None:
        self.idle_timer = None
        if self.close_sent or self.disconnected:
            return
        left = self.last_frame + self.idle_s - self.loop.time()
        if left > 0 or self.responder is not None:
            self.idle_timer = self.loop.call_later(max(left, 1.0), self._idle_check)
            return
        self._close(1001, f"idle for {self.idle_s:g} s")

    def _close(self, code: int, reason: str) -> None:
        if self.close_sent or self.transport.is_closing():
            return
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

    def handle_close(self, event: Frame) -> None:
        if getattr(self, "fast", False) and self.close_sent and self.close_timer is not None:
            self.close_timer.cancel()  # the client echoed our close: done
            self.close_timer = None
            self.transport.close()
            return
        super().handle_close(event)

    def connection_lost(self, exc: Exception | None) -> None:
        if getattr(self, "fast", False):
            if self.idle_timer is not None:
                self.idle_timer.cancel()
                self.idle_timer = None
            self.pending.clear()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if getattr(self, "fast", False) and self.handshake_complete and not self.close_sent:
            self.stop_keepalive()
            self.conn.send_close(1012)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.transport.close()
            return
        super().shutdown()


def fast_ws_protocol(app: Any) -> type[FastWebSocketProtocol]:
    """A `FastWebSocketProtocol` subclass bound to this app (`server.app.create_app`'s hooks)."""
    hooks = app.state.fast_ws
    return type("FastWebSocketProtocol", (FastWebSocketProtocol,), {"arl": hooks})

__all__ = ["FAST_PATH", "FastWebSocketProtocol", "fast_ws_protocol"]
