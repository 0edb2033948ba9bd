"""`arlarena serve --workers N`: N server processes behind one address, sessions pinned to one.

Design (Linux):

* The supervisor (the process `arlarena serve` started) reserves the address, starts N worker
  processes and restarts any that dies. Each worker is a complete env server (the same app) on
  its own listening socket bound to the SAME host:port with SO_REUSEPORT: the kernel spreads new
  connections evenly over the workers, so every core accepts, parses and steps on its own.
* A session lives in the worker that created it, and its id says which: `"<worker>.<hex>"`.
  A client's connection stays on one worker, so a client that creates its session on a
  connection and then steps on it (`RemoteEnv`, the pools' per-env clients) talks to the right
  worker with no extra hop.
* A request for a session of another worker (a reconnect landed elsewhere; a pool's `batch`
  frame that carries sessions of several workers) is forwarded over the workers' private Unix
  sockets (length-prefixed JSON, many requests in flight on one connection) and answered with
  the owner's reply. A batch is split by owner, the parts run concurrently, the replies come
  back in the request's order. `/health` and `/metrics` sum every worker's counts.
* A worker that dies takes its sessions with it (as a restarted single server does): requests
  for them get `unknown_session` saying so, and the pools recover as from any lost server.

`--max-sessions` and the connection limits are per worker. Session pinning needs no shared
state: the owner is in the id, so workers share nothing but the address.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from arlarena_envs.errors import ConfigError

SEP = "."  # session id = f"{worker}{SEP}{hex}"
_HEADER = struct.Struct("!I")
MAX_FRAME = 1 << 30


def session_prefix(index: int) -> str:
    return f"{index}{SEP}"


def owner_of(session_id: Any) -> int | None:
    """The worker index a session id names (None: not a worker-pinned id)."""
    if not isinstance(session_id, str):
        return None
    head, sep, _ = session_id.partition(SEP)
    return int(head) if sep and head.isdigit() and len(head) <= 4 else None


def socket_path(run_dir: str | Path, index: int) -> str:
    return str(Path(run_dir) / f"w{index}.sock")


LocalRun = Callable[[Any, "str | None"], Awaitable[tuple[int, str]]]


class _PeerLink:
    """One multiplexed connection to a peer worker's Unix socket (opened on first use)."""

    def __init__(self, path: str):
        self.path = path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.waiting: dict[int, asyncio.Future] = {}
        self.tags = itertools.count()
        self._connecting: asyncio.Lock | None = None

    async def call(self, message: dict[str, Any]) -> dict[str, Any]:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self.writer is None or self.writer.is_closing():
                self.reader, self.writer = await asyncio.open_unix_connection(self.path, limit=MAX_FRAME)
                asyncio.get_running_loop().create_task(self._read(self.reader))
        tag = next(self.tags)
        fut = asyncio.get_running_loop().create_future()
        self.waiting[tag] = fut
        payload = json.dumps({**message, "t": tag}).encode()
        assert self.writer is not None
        self.writer.write(_HEADER.pack(len(payload)) + payload)
        await self.writer.drain()
        return await fut

    async def _read(self, reader: asyncio.StreamReader) -> None:
        err: BaseException = ConnectionError(f"peer worker link {self.path} closed")
        try:
            while True:
                n = _HEADER.unpack(await reader.readexactly(_HEADER.size))[0]
                msg = json.loads(await reader.readexactly(n))
                fut = self.waiting.pop(msg.get("t"), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
            err = ConnectionError(f"peer worker link {self.path} closed: {e}")
        finally:
            if self.writer is not None:
                self.writer.close()
            self.writer = None
            for fut in self.waiting.values():
                if not fut.done():
                    fut.set_exception(err)
            self.waiting.clear()


class PeerRouter:
    """A worker's side of `--workers`: forwards requests for other workers' sessions and answers
    the requests the others forward here. Plugged into `server.app.create_app(router=...)`."""

    SESSION_OPS = frozenset({"reset", "step", "close", "oracle", "prompt"})

    def __init__(self, index: int, count: int, run_dir: str | Path):
        if not 0 <= index < count:
            raise ConfigError(f"worker index {index} out of range for {count} workers")
        self.index, self.count, self.run_dir = index, count, str(run_dir)
        self.prefix = session_prefix(index)
        self.links = {j: _PeerLink(socket_path(run_dir, j)) for j in range(count) if j != index}
        self.local: LocalRun | None = None
        self.local_health: Callable[[], Any] | None = None
        self.local_metrics: Callable[[], Any] | None = None
        self.forwarded = 0

    def unix_socket(self) -> socket.socket:
        """This worker's private socket (peers connect here)."""
        path = socket_path(self.run_dir, self.index)
        Path(path).unlink(missing_ok=True)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        os.chmod(path, 0o600)  # the run dir is private too: only this user's processes forward
        s.listen(256)
        return s

    async def start(self) -> asyncio.AbstractServer:
        """Serve the peers' forwarded requests on this worker's private socket (app lifespan)."""
        return await asyncio.start_unix_server(self._serve_peer, sock=self.unix_socket(), limit=MAX_FRAME)

    # ------------------------------------------------------------------ answering peers

    async def _serve_peer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def answer(msg: dict[str, Any]) -> None:
            kind = msg.get("kind")
            if kind == "request":
                assert self.local is not None
                status, body = await self.local(msg["data"], None)
                out = {"t": msg["t"], "status": status, "body": body}
            elif kind == "health":
                out = {"t": msg["t"], "health": json.loads(self.local_health().model_dump_json())}  # type: ignore[misc]
            else:
                out = {"t": msg["t"], "metrics": json.loads(self.local_metrics().model_dump_json())}  # type: ignore[misc]
            payload = json.dumps(out).encode()
            writer.write(_HEADER.pack(len(payload)) + payload)
            await writer.drain()

        tasks: set[asyncio.Task] = set()
        try:
            while True:
                n = _HEADER.unpack(await reader.readexactly(_HEADER.size))[0]
                task = asyncio.get_running_loop().create_task(answer(json.loads(await reader.readexactly(n))))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    # ------------------------------------------------------------------ routing

    async def route(self, data: Any, scope: str | None) -> tuple[int, str] | None:
        """The reply for a request that belongs elsewhere, or None: handle it here."""
        if not isinstance(data, dict):
            return None
        op = data.get("op")
        if op == "batch":
            items = data.get("requests")
            if not isinstance(items, list) or not items:
                return None
            owners = [self._owner(it) for it in items]
            if all(o == self.index for o in owners):
                return None
            return await self._split_batch(data, items, owners, scope)
        if op in self.SESSION_OPS:
            owner = owner_of(data.get("session_id"))
            if owner is not None and owner != self.index:
                return await self.forward(owner, data)
        return None

    def is_local(self, data: Any) -> bool:
        """Whether `route(data)` would answer None (handle it here), decided without awaiting."""
        if not isinstance(data, dict):
            return True
        op = data.get("op")
        if op == "batch":
            items = data.get("requests")
            return not isinstance(items, list) or not items or all(self._owner(it) == self.index for it in items)
        if op in self.SESSION_OPS:
            owner = owner_of(data.get("session_id"))
            return owner is None or owner == self.index
        return True

    def _owner(self, item: Any) -> int:
        if isinstance(item, dict) and item.get("op") in self.SESSION_OPS:
            owner = owner_of(item.get("session_id"))
            if owner is not None:
                return owner
        return self.index  # creates, nested batches, malformed items: answered here

    async def forward(self, owner: int, data: dict[str, Any]) -> tuple[int, str]:
        from arlarena_envs.server.app import _err_json
        from arlarena_envs.server.messages import HTTP_STATUS, ErrorCode

        link = self.links.get(owner)
        rid = data.get("request_id") if isinstance(data.get("request_id"), str) else None
        if link is None:
            code = ErrorCode.UNKNOWN_SESSION
            return HTTP_STATUS[code], _err_json(code, f"session {data.get('session_id')!r} names worker {owner}, but this "
                                                      f"server runs {self.count} workers; create a new session", rid)
        self.forwarded += 1
        try:
            reply = await link.call({"kind": "request", "data": data})
        except (ConnectionError, OSError) as e:
            code = ErrorCode.UNKNOWN_SESSION
            return HTTP_STATUS[code], _err_json(
                code, f"session {data.get('session_id')!r} lived on worker {owner}, which is gone ({e}); its sessions are "
                      "lost: create a new session", rid)
        return reply["status"], reply["body"]

    async def _split_batch(self, data: dict[str, Any], items: list[Any], owners: list[int], scope: str | None) -> tuple[int, str]:
        from arlarena_envs.server.app import _ok_json

        assert self.local is not None
        parts: dict[int, list[int]] = {}
        for k, o in enumerate(owners):
            parts.setdefault(o, []).append(k)

        async def run_part(owner: int, idxs: list[int]) -> list[Any]:
            sub = {"op": "batch", "requests": [items[k] for k in idxs]}
            if owner == self.index:
                status, body = await self.local(sub, scope)
            else:
                status, body = await self.forward(owner, sub)
            reply = json.loads(body)
            if reply.get("ok"):
                return reply["result"]["replies"]
            return [reply] * len(idxs)  # the whole part failed (e.g. its worker is gone): each item says so

        results = await asyncio.gather(*(run_part(o, idxs) for o, idxs in parts.items()))
        replies: list[Any] = [None] * len(items)
        for (owner, idxs), got in zip(parts.items(), results):
            for k, r in zip(idxs, got):
                replies[k] = r
        rid = data.get("request_id") if isinstance(data.get("request_id"), str) else None
        return 200, _ok_json(rid, json.dumps({"replies": replies}))

    # ------------------------------------------------------------------ whole-server views

    async def _gather_peers(self, kind: str) -> list[dict[str, Any]]:
        async def one(link: _PeerLink) -> dict[str, Any] | None:
            try:
                return (await asyncio.wait_for(link.call({"kind": kind}), 5.0))[kind]
            except (ConnectionError, OSError, asyncio.TimeoutError):
                return None  # a worker restarting: counted when it is back

        return [r for r in await asyncio.gather(*(one(lk) for lk in self.links.values())) if r is not None]

    async def health(self, own: Any) -> Any:
        """This worker's Health with the sessions and limits of every live worker."""
        peers = await self._gather_peers("health")
        return own.model_copy(update={
            "sessions": own.sessions + sum(p["sessions"] for p in peers),
            "max_sessions": own.max_sessions * self.count,
        })

    async def metrics(self, own: Any) -> Any:
        """Counters summed over the workers; latency percentiles are the worst worker's."""
        peers = await self._gather_peers("metrics")
        out = own.model_dump()
        for p in peers:
            for k in ("sessions_active", "sessions_created_total", "sessions_closed_total", "sessions_reaped_total"):
                out[k] += p[k]
            for k in ("requests_total", "errors_total"):
                for name, v in p[k].items():
                    out[k][name] = out[k].get(name, 0) + v
            for k in ("step_latency_ms_p50", "step_latency_ms_p99"):
                if p[k] is not None:
                    out[k] = p[k] if out[k] is None else max(out[k], p[k])
        return type(own).model_validate(out)


# ---------------------------------------------------------------------------- the supervisor

def reuseport_socket(host: str, port: int, *, listen: bool) -> socket.socket:
    """A TCP socket on host:port with SO_REUSEPORT (every worker binds the same address)."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError("--workers needs SO_REUSEPORT (Linux); run one server per port instead")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        s.bind((host, port))
    except OSError as e:
        s.close()
        raise ConfigError(f"cannot bind {host}:{port} ({e}); pick another --port (0: any free one)") from e
    if listen:
        s.listen(4096)  # as server.cli.LISTEN_BACKLOG (the kernel caps it at somaxconn)
    return s


def supervise(argv: list[str], host: str, port: int, workers: int, ready_file: str | None, *,
              parent_pid: int | None = None, start_timeout_s: float = 120.0) -> int:
    """Run `workers` copies of `arlarena serve argv...` on host:port and keep them running.

    The address is reserved first (bound, not listening: the kernel gives connections only to
    listening sockets), so `--port 0` resolves to one port for all; the public ready file is
    written once every worker listens."""
    reserve = reuseport_socket(host, port, listen=False)
    port = reserve.getsockname()[1]
    run_dir = tempfile.mkdtemp(prefix="arlarena-workers-")
    os.chmod(run_dir, 0o700)
    procs: list[subprocess.Popen | None] = [None] * workers
    stopping = False

    def spawn(k: int) -> subprocess.Popen:
        ready = Path(run_dir) / f"ready-{k}.json"
        ready.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "arlarena_envs.cli", "serve", *argv, "--host", host, "--port", str(port),
               "--workers", str(workers), "--worker-index", str(k), "--worker-dir", run_dir,
               "--ready-file", str(ready), "--parent-pid", str(os.getpid())]
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL)

    def wait_ready(k: int, deadline: float) -> None:
        ready = Path(run_dir) / f"ready-{k}.json"
        while not ready.exists():
            p = procs[k]
            if p is not None and p.poll() is not None:
                raise ConfigError(f"server worker {k} exited with {p.returncode} at start (see its output above)")
            if time.monotonic() > deadline:
                raise ConfigError(f"server worker {k} not listening after {start_timeout_s:g} s")
            time.sleep(0.02)

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for k in range(workers):
            procs[k] = spawn(k)
        deadline = time.monotonic() + start_timeout_s
        for k in range(workers):
            wait_ready(k, deadline)
        reserve.close()
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}"
        if ready_file:
            tmp = Path(ready_file + ".tmp")
            tmp.write_text(json.dumps({"url": url, "pid": os.getpid(), "workers": [p.pid for p in procs if p]}))
            tmp.replace(ready_file)
        print(f"arlarena serve: {workers} workers on {url}", flush=True)
        while not stopping:
            if parent_pid and os.getppid() != parent_pid:  # the pool that started us is gone
                break
            for k, p in enumerate(procs):
                if p is not None and p.poll() is not None and not stopping:
                    print(f"arlarena serve: worker {k} exited with {p.returncode}; restarting it", flush=True)
                    procs[k] = spawn(k)
                    try:
                        wait_ready(k, time.monotonic() + start_timeout_s)
                    except ConfigError as e:
                        print(f"arlarena serve: {e}", flush=True)
            time.sleep(0.2)
    finally:
        reserve.close()
        for p in procs:
            if p is not None and p.poll() is None:
                p.terminate()
        for p in procs:
            if p is not None:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        for f in Path(run_dir).glob("*"):
            f.unlink(missing_ok=True)
        os.rmdir(run_dir)
    return 0


__all__ = ["PeerRouter", "owner_of", "reuseport_socket", "session_prefix", "socket_path", "supervise"]
