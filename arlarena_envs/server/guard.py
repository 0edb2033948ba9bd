"""Connection guard: uvicorn's HTTP protocol with deadlines and a connection cap.

uvicorn (h11) closes a keep-alive connection only after a response; a connection that never
sends a request, or sends half of its headers and stops, is held forever. Enough of them
exhaust the file descriptors and `/health` stops answering. `GuardedH11Protocol` adds:

* a header deadline: from connect (and again after each response) the client has
  `header_timeout_s` to deliver a complete request head, else the connection is closed;
* a connection cap: when a new connection would exceed `max_connections`, the oldest
  connection with no request in flight (idle or half-open) is closed to make room; if every
  connection is busy, the new one is closed instead.

Bodies are bounded in time and size by the app (`server.app`), WebSockets by an idle timeout
there and by uvicorn's ping/pong (a half-open socket stops answering pings).

    uvicorn.Config(app, http=guarded_protocol(header_timeout_s=10, max_connections=4096))
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


_ARRIVALS = itertools.count()


class GuardedH11Protocol(H11Protocol):
    """H11Protocol + header deadline + connection cap (class attributes set by `guarded_protocol`)."""

    header_timeout_s: float = 10.0
    max_connections: int = 4096
    closed_by_guard = 0  # connections closed for a missed deadline or the cap (all instances)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        # arrival order, not loop.time(): uvloop's clock is cached per loop iteration, so
        # connections accepted together had equal times and "oldest" was an arbitrary one
        self._born = next(_ARRIVALS)
        super().connection_made(transport)
        if len(self.connections) > self.max_connections and not self._make_room():
            type(self).closed_by_guard += 1
            transport.close()
            return
        self._arm()

    def _idle(self) -> bool:
        """No request in flight: waiting for (the rest of) a request head."""
        return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

    def _make_room(self) -> bool:
        victims = [c for c in self.connections if isinstance(c, GuardedH11Protocol) and c is not self and c._idle()]
        if not victims:
            return False
        oldest = min(victims, key=lambda c: c._born)
        type(self).closed_by_guard += 1
        oldest._close()
        return True

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()  # type: ignore[union-attr]
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self._idle():
            type(self).closed_by_guard += 1
            self._close()

    def _close(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # a whole request head arrived
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request head has the same deadline

    def handle_websocket_upgrade(self, event: Any) -> None:
        self._disarm()  # the WebSocket protocol takes over (with its own idle timeout and pings)
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def guarded_protocol(*, header_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
    """A `GuardedH11Protocol` subclass with these limits (one per server)."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout_s": float(header_timeout_s), "max_connections": int(max_connections), "closed_by_guard": 0},
    )


def raise_fd_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit; returns the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


__all__ = ["GuardedH11Protocol", "guarded_protocol", "raise_fd_limit"]
