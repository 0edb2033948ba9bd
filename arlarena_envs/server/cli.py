"""`arlarena serve ENV_ID... [--host 127.0.0.1] [--port 8000]`: run the env server.

The server binds 127.0.0.1 unless told otherwise; binding any other address needs a token
(`--token-env VAR` names an environment variable holding it, default ARLARENA_SERVER_TOKEN; a
token on the command line would show in `ps`). `--port 0` picks a free port; `--ready-file`
gets `{"url": ..., "pid": ...}` once the server listens (what pools and tests wait for).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import json
import logging
import os
import socket
from pathlib import Path

from arlarena_envs.errors import ConfigError

DEFAULT_TOKEN_ENV = "ARLARENA_SERVER_TOKEN"
# pending connections the kernel queues before accept (it caps this at net.core.somaxconn): a
# trainer that opens thousands of sessions at once must not see dropped handshakes
LISTEN_BACKLOG = 4096


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("env_ids", nargs="*", help="env ids to serve (e.g. arlarena/Sokoban-v0); none with --all")
    p.add_argument("--all", action="store_true", help="serve every env id in the registry")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need a token)")
    p.add_argument("--port", type=int, default=8000, help="port (0: pick a free one; see --ready-file)")
    p.add_argument("--token-env", default=DEFAULT_TOKEN_ENV, help="environment variable holding the auth token")
    p.add_argument("--max-sessions", type=int, default=1024, help="sessions held at most (more: 'capacity' error)")
    p.add_argument("--idle-timeout", type=float, default=600.0, help="seconds before an idle session is reaped (0: never)")
    p.add_argument("--max-action-bytes", type=int, default=256 * 1024, help="largest accepted action (UTF-8 bytes)")
    p.add_argument("--offload", nargs="?", const="all", default="auto", choices=["auto", "all", "none"],
                   help="where env calls run: auto (default: create/reset/oracle in threads, steps on the event loop), "
                        "all (every call in threads; bare --offload), none (all on the loop: a slow call blocks /health)")
    p.add_argument("--allow-kwarg", action="append", default=[], metavar="NAME",
                   help="let clients set this env kwarg with any value (beyond the spec's client_kwargs; repeatable). "
                        "Paths and data switches (cache_dir, data_dir, verify_data, spacy_model) are refused otherwise")
    p.add_argument("--max-env-variants", type=int, default=4,
                   help="distinct data variants (e.g. WebShop catalogue_seed values) kept per env id")
    p.add_argument("--header-timeout", type=float, default=10.0, help="seconds a connection has to send a request head")
    p.add_argument("--body-timeout", type=float, default=30.0, help="seconds a request body has to arrive")
    p.add_argument("--ws-idle-timeout", type=float, default=900.0, help="close a WebSocket idle this long (0: never)")
    p.add_argument("--max-connections", type=int, default=None,
                   help="open connections at most (default: 4096, or fewer under a low fd limit); beyond it the "
                        "oldest connection with no request in flight is closed")
    p.add_argument("--ws-impl", default="fast", choices=["fast", "websockets-sansio", "websockets"],
                   help="WebSocket implementation: fast (default: uvicorn's sans-I/O protocol answering /ws frames "
                        "without an ASGI round trip, server/fast_ws.py), or uvicorn's own (every frame through ASGI)")
    p.add_argument("--gc-freeze-s", type=float, default=10.0,
                   help="move long-lived objects out of the garbage collector's sight this often (0: never); "
                        "keeps full collections short with thousands of sessions open")
    p.add_argument("--gc-full-s", type=float, default=600.0,
                   help="with --gc-freeze-s: unfreeze and collect everything this often (frees frozen cyclic garbage)")
    p.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"],
                   help="event loop: auto (default: uvloop when installed, as in the 'server' extra; else asyncio)")
    p.add_argument("--parent-pid", type=int, default=None,
                   help="exit when this process is gone (pool workers: no orphans if the pool's process is killed)")
    p.add_argument("--ready-file", default=None, help="write {url, pid} as JSON here once listening")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes behind the one address (0: one per core); sessions stay in the worker "
                        "that created them (docs/server.md, 'Workers')")
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)  # set by the supervisor
    p.add_argument("--worker-dir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])


def _event_loop(choice: str) -> str:
    """uvicorn's loop setting; 'uvloop' without the package is a clear error, not uvicorn's."""
    if choice == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError as e:
            raise ConfigError("--loop uvloop needs the uvloop package (pip install 'arlarena-envs[server]')") from e
    return choice


def _freeze_long_lived(loop: asyncio.AbstractEventLoop, every_s: float, full_every_s: float) -> None:
    """Keep full garbage collections short while thousands of sessions are open.

    A full collection walks every tracked object; with 4,096 open sessions that took 50-85 ms
    per worker, paused the event loop and made the soak's p99 latency ~300-500 ms. Objects that
    have lived a while (modules, the registry, open sessions) are moved out of the collector's
    sight with `gc.freeze()` every `every_s` seconds, so collections walk only what is new.
    Frozen objects are still freed by reference counting when a session closes; only frozen
    *cyclic* garbage waits for the next full pass: every `full_every_s` seconds everything is
    unfrozen, collected once (one pause of the old size) and frozen again."""
    gc.collect()
    gc.freeze()
    state = {"last_full": loop.time()}

    def tick() -> None:
        if loop.time() - state["last_full"] >= full_every_s:
            gc.unfreeze()
            gc.collect()
            state["last_full"] = loop.time()
        gc.freeze()
        loop.call_later(every_s, tick)

    loop.call_later(every_s, tick)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _worker_argv(args: argparse.Namespace, env_ids: list[str]) -> list[str]:
    """The options every worker of `--workers N` is started with (what this command was given,
    less the address, ready file and parent, which the supervisor sets)."""
    out = list(env_ids) + ["--token-env", args.token_env, "--max-sessions", str(args.max_sessions),
                           "--idle-timeout", str(args.idle_timeout), "--max-action-bytes", str(args.max_action_bytes),
                           "--offload", args.offload, "--max-env-variants", str(args.max_env_variants),
                           "--header-timeout", str(args.header_timeout), "--body-timeout", str(args.body_timeout),
                           "--ws-idle-timeout", str(args.ws_idle_timeout), "--ws-impl", args.ws_impl, "--loop", args.loop,
                           "--gc-freeze-s", str(args.gc_freeze_s), "--gc-full-s", str(args.gc_full_s), "--log-level", args.log_level]
    for name in args.allow_kwarg:
        out += ["--allow-kwarg", name]
    if args.max_connections:
        out += ["--max-connections", str(args.max_connections)]
    return out


def main_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError as e:  # pragma: no cover
        from arlarena_envs.errors import MissingDependencyError

        raise MissingDependencyError("arlarena serve needs the server extra: pip install 'arlarena-envs[server]'") from e
    from arlarena_envs.registry import load_specs
    from arlarena_envs.server.app import ServerConfig, create_app
    from arlarena_envs.server.fast_ws import fast_ws_protocol
    from arlarena_envs.server.guard import guarded_protocol, raise_fd_limit

    env_ids = sorted(load_specs()) if args.all else list(args.env_ids)
    if not env_ids:
        raise ConfigError("name the env ids to serve (arlarena serve arlarena/Sokoban-v0) or pass --all")
    token = os.environ.get(args.token_env) or None
    if not _is_loopback(args.host) and token is None:
        raise ConfigError(
            f"binding {args.host} (not loopback) needs a token: set ${args.token_env} (clients send it as "
            "'Authorization: Bearer <token>'), or bind 127.0.0.1"
        )
    workers = args.workers if args.workers > 0 else (os.cpu_count() or 1)
    if workers > 1 and args.worker_index is None:  # the supervisor: N copies of this command
        from arlarena_envs.server.workers import supervise

        return supervise(_worker_argv(args, env_ids), args.host, args.port, workers, args.ready_file, parent_pid=args.parent_pid)
    router = None
    if args.worker_index is not None:
        from arlarena_envs.server.workers import PeerRouter, session_prefix

        if not args.worker_dir:
            raise ConfigError("--worker-index needs --worker-dir (both are set by `serve --workers N`)")
        router = PeerRouter(args.worker_index, workers, args.worker_dir)
    config = ServerConfig(
        session_prefix=session_prefix(args.worker_index) if router is not None else "",
        env_ids=env_ids,
        max_sessions=args.max_sessions,
        idle_timeout_s=args.idle_timeout or None,
        max_action_bytes=args.max_action_bytes,
        token=token,
        offload=args.offload,
        allow_kwargs=frozenset(args.allow_kwarg),
        max_env_variants=args.max_env_variants,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        ws_idle_timeout_s=args.ws_idle_timeout or None,
        max_connections=args.max_connections or max(16, min(4096, raise_fd_limit() - 256)),
    )
    app = create_app(config, router=router)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    if router is not None:  # one of N workers: the same address as its siblings (SO_REUSEPORT)
        from arlarena_envs.server.workers import reuseport_socket

        sock = reuseport_socket(args.host, args.port, listen=True)
    else:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted sockets inherit TCP_NODELAY (Linux): replies are written in pieces (headers, body)
        # and must not wait for delayed ACKs (~40 ms per HTTP request otherwise)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((args.host, args.port))
        except OSError as e:
            raise ConfigError(f"cannot bind {args.host}:{args.port} ({e}); pick another --port (0: any free one)") from e
        sock.listen(LISTEN_BACKLOG)
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    url = f"http://{shown}:{port}"
    # a frame carries one action (or a pool's batch of them) plus a little JSON; larger frames
    # are refused by the transport, oversize actions in smaller frames get 'action_too_large'
    uv = uvicorn.Config(
        app,
        log_level=args.log_level,
        access_log=False,
        http=guarded_protocol(header_timeout_s=config.header_timeout_s, max_connections=config.max_connections),
        timeout_keep_alive=5,  # idle keep-alive HTTP connections are closed after 5 s
        h11_max_incomplete_event_size=16 * 1024,  # request heads larger than 16 KiB: 400
        ws=fast_ws_protocol(app) if args.ws_impl == "fast" else args.ws_impl,
        loop=_event_loop(args.loop),
        ws_max_size=config.max_request_bytes,
        ws_ping_interval=20.0,  # a half-open WebSocket stops answering pings and is closed
        ws_ping_timeout=20.0,
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    server = uvicorn.Server(uv)
    ready = Path(args.ready_file) if args.ready_file else None

    orig_startup = server.startup

    async def startup(sockets=None):  # write the ready file once uvicorn accepts connections
        await orig_startup(sockets=sockets)
        if args.gc_freeze_s > 0:
            _freeze_long_lived(asyncio.get_running_loop(), args.gc_freeze_s, args.gc_full_s)
        if ready is not None:
            tmp = ready.with_suffix(ready.suffix + ".tmp")
            tmp.write_text(json.dumps({"url": url, "pid": os.getpid(), "env_ids": env_ids}))
            tmp.replace(ready)
        print(f"arlarena serve: {', '.join(env_ids)} on {url} (ws {url.replace('http', 'ws', 1)}/ws)", flush=True)

    server.startup = startup  # type: ignore[method-assign]
    if args.parent_pid:
        import threading
        import time

        def watch_parent() -> None:
            while not server.should_exit:
                if os.getppid() != args.parent_pid:  # reparented: the pool's process died
                    server.should_exit = True
                    return
                time.sleep(0.5)

        threading.Thread(target=watch_parent, name="arlarena-parent-watch", daemon=True).start()
    server.run(sockets=[sock])
    return 0


add_arguments = add_serve_arguments
main = main_serve
