"""`SubprocessPool`: envs in local worker processes, each one an `arlarena serve` server on a free
loopback port (the same command the containers run), stepped through the remote client.

    pool = make_pool("arlarena/Sokoban-v0", 16, backend="subprocess", num_workers=4)

A worker that dies is started again; the episodes it held come back truncated with a reason
(see `pools.remote.ServerPool`). Workers are killed on close and when this process exits.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from arlarena_envs.errors import ConfigError, ServerLostError
from arlarena_envs.pools.remote import ServerPool, Worker, wait_healthy
from arlarena_envs.registry import get_spec

_LIVE: "weakref.WeakSet[ServerProcess]" = weakref.WeakSet()


def serve_command(env_ids: list[str], *, port: int = 0, host: str = "127.0.0.1", ready_file: str | None = None, extra: list[str] | None = None) -> list[str]:
    """The `arlarena serve` command line (run with this interpreter, so the same venv)."""
    cmd = [sys.executable, "-m", "arlarena_envs.cli", "serve", *env_ids, "--host", host, "--port", str(port)]
    if ready_file:
        cmd += ["--ready-file", ready_file]
    return cmd + list(extra or [])


class ServerProcess(Worker):
    """`arlarena serve` as a child process on a free loopback port."""

    def __init__(self, env_ids: list[str], *, start_timeout_s: float = 60.0, token: str | None = None, extra_args: list[str] | None = None):
        self.env_ids, self.start_timeout_s, self.extra_args = list(env_ids), start_timeout_s, list(extra_args or [])
        self.token = token
        self.proc: subprocess.Popen | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="arlarena-worker-"))
        self.log_path = self._dir / "server.log"
        self.url = ""
        self.start()
        _LIVE.add(self)

    def start(self) -> None:
        ready = self._dir / f"ready-{secrets.token_hex(4)}.json"
        env = dict(os.environ)
        if self.token:
            env["ARLARENA_SERVER_TOKEN"] = self.token
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                serve_command(self.env_ids, ready_file=str(ready), extra=["--parent-pid", str(os.getpid()), *self.extra_args]),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # Ctrl-C in the terminal reaches us; we stop the worker
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout_s
        while not ready.exists():
            if self.proc.poll() is not None:
                raise ServerLostError(f"worker server exited with {self.proc.returncode} at start; log {self.log_path}:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise ServerLostError(f"worker server not ready after {self.start_timeout_s:g} s; log {self.log_path}:\n{self.tail()}")
            time.sleep(0.02)
        self.url = json.loads(ready.read_text())["url"]
        ready.unlink()
        wait_healthy(self.url, self.start_timeout_s, alive=self.alive)

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Kill the worker now (SIGKILL): what a crash looks like to the pool."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.close(keep_dir=True)
        self.start()

    def close(self, keep_dir: bool = False) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        if not keep_dir:
            for f in self._dir.glob("*"):
                f.unlink(missing_ok=True)
            try:
                self._dir.rmdir()
            except OSError:
                pass


@atexit.register
def _kill_leftovers() -> None:
    for w in list(_LIVE):
        w.close()


class SubprocessPool(ServerPool):
    """N envs over `num_workers` local server processes (default: one per CPU, at most N)."""

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        env_kwargs: dict[str, Any] | None = None,
        *,
        num_workers: int | None = None,
        start_timeout_s: float = 60.0,
        server_args: list[str] | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ):
        if num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1, got {num_envs}")
        n = num_workers or min(num_envs, os.cpu_count() or 1)
        if n < 1:
            raise ConfigError(f"num_workers must be >= 1, got {n}")
        spec_id = get_spec(env_id).id
        workers: list[ServerProcess] = []
        futs: list[Any] = []
        try:
            # start the workers concurrently: each pays the interpreter + import start-up
            import concurrent.futures as cf

            with cf.ThreadPoolExecutor(max_workers=n) as ex:
                futs = [ex.submit(ServerProcess, [spec_id], start_timeout_s=start_timeout_s, extra_args=server_args) for _ in range(n)]
                for f in futs:
                    workers.append(f.result())
        except BaseException:
            for f in futs:
                if f.done() and f.exception() is None and f.result() not in workers:
                    workers.append(f.result())
            for w in workers:
                w.close()
            raise
        super().__init__(spec_id, num_envs, workers, env_kwargs=env_kwargs, client_kwargs=client_kwargs)


__all__ = ["ServerProcess", "SubprocessPool", "serve_command"]
