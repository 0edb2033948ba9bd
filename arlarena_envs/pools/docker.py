"""`DockerPool`: envs in Docker containers of the family image (`arlarena containers build`),
each container an env server published on a loopback port, stepped through the remote client.

    pool = make_pool("arlarena/Sokoban-v0", 8, backend="docker", num_workers=2)

Every container gets the labels `arlarena.managed=1` and `arlarena.pool=<pool id>`; the pool
removes every container carrying its label on close, on a start-up error, on Ctrl-C (the
`with` block / atexit) and when the interpreter exits. A container that dies is replaced and
its episodes come back truncated with a reason (see `pools.remote.ServerPool`).
"""

from __future__ import annotations

import atexit
import os
import secrets
import time
import weakref
from pathlib import Path
from typing import Any

from arlarena_envs.containers import LABEL, docker_client, ensure_image, family_of
from arlarena_envs.errors import ConfigError, ServerLostError
from arlarena_envs.pools.remote import ServerPool, Worker, wait_healthy

CONTAINER_PORT = "8000/tcp"
_LIVE_POOLS: "weakref.WeakSet[DockerPool]" = weakref.WeakSet()


class ContainerWorker(Worker):
    """One container running `arlarena serve` (bound to 0.0.0.0 inside, loopback outside)."""

    def __init__(self, client: Any, image: str, env_ids: list[str], pool_id: str, *, token: str,
                 volumes: dict[str, dict[str, str]] | None = None, environment: dict[str, str] | None = None, start_timeout_s: float = 90.0, server_args: list[str] | None = None):
        self.client, self.image, self.env_ids, self.pool_id = client, image, list(env_ids), pool_id
        self.token, self.volumes, self.start_timeout_s = token, volumes or {}, start_timeout_s
        self.environment = dict(environment or {})
        self.server_args = list(server_args or [])
        self.container: Any = None
        self.url = ""
        self.start_s = 0.0
        self.start()

    def start(self) -> None:
        t0 = time.monotonic()
        self.container = self.client.containers.run(
            self.image,
            command=[*self.env_ids, *self.server_args],
            detach=True,
            init=True,  # SIGTERM reaches the server at once; `docker stop` takes 0.2 s, not 10
            labels={LABEL: "1", "arlarena.pool": self.pool_id},
            ports={CONTAINER_PORT: ("127.0.0.1", None)},  # loopback only, a free host port
            environment={**self.environment, "ARLARENA_SERVER_TOKEN": self.token},
            volumes=self.volumes,
            mem_limit=os.environ.get("ARLARENA_CONTAINER_MEM", "2g"),
        )
        deadline = time.monotonic() + self.start_timeout_s
        port = None
        while port is None:
            self.container.reload()
            if self.container.status in ("exited", "dead"):
                raise ServerLostError(f"container {self.container.short_id} ({self.image}) exited at start:\n{self.logs()}")
            binding = (self.container.ports or {}).get(CONTAINER_PORT)
            if binding:
                port = int(binding[0]["HostPort"])
            elif time.monotonic() > deadline:
                raise ServerLostError(f"container {self.container.short_id} published no port after {self.start_timeout_s:g} s")
            else:
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port}"
        # docker-proxy accepts before the app listens: poll /health, with retries
        wait_healthy(self.url, max(1.0, deadline - time.monotonic()), alive=self.alive)
        self.start_s = time.monotonic() - t0

    def logs(self, tail: int = 40) -> str:
        try:
            return self.container.logs(tail=tail).decode(errors="replace")
        except Exception as e:  # noqa: BLE001 - the container may be gone already
            return f"(no logs: {e})"

    def alive(self) -> bool:
        try:
            self.container.reload()
        except Exception:  # noqa: BLE001 - removed container: not alive
            return False
        return self.container.status in ("created", "running")

    def kill(self) -> None:
        """`docker kill`: what a crash looks like to the pool (used by tests and benchmarks)."""
        self.container.kill()

    def restart(self) -> None:
        self._remove()
        self.start()

    def _remove(self) -> None:
        if self.container is None:
            return
        try:
            self.container.remove(force=True)
        except Exception:  # noqa: BLE001 - already removed / engine hiccup: the label sweep catches it
            pass

    def close(self) -> None:
        self._remove()


def remove_pool_containers(client: Any, pool_id: str | None = None) -> int:
    """Remove every container of ours (of one pool, or all with the arlarena.managed label)."""
    flt = {"label": f"arlarena.pool={pool_id}"} if pool_id else {"label": f"{LABEL}=1"}
    n = 0
    for c in client.containers.list(all=True, filters=flt):
        try:
            c.remove(force=True)
            n += 1
        except Exception:  # noqa: BLE001 - removed concurrently
            pass
    return n


@atexit.register
def _cleanup_at_exit() -> None:
    for pool in list(_LIVE_POOLS):
        pool.close()


class DockerPool(ServerPool):
    """N envs over `num_workers` containers of the env's family image."""

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        env_kwargs: dict[str, Any] | None = None,
        *,
        num_workers: int | None = None,
        image: str | None = None,
        build: bool = True,
        data_dir: str | os.PathLike | None = None,
        start_timeout_s: float = 90.0,
        server_args: list[str] | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ):
        from arlarena_envs.registry import get_spec

        if num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1, got {num_envs}")
        spec_id = get_spec(env_id).id
        fam = family_of(spec_id)
        self.client = docker_client()
        if image is None:
            image = ensure_image(spec_id) if build else None
            if image is None:
                from arlarena_envs.containers import image_for

                image = image_for(spec_id)
        self.image = image
        self.pool_id = secrets.token_hex(8)
        volumes: dict[str, dict[str, str]] = {}
        environment: dict[str, str] = {}
        if data_dir is not None:  # data the env reads (e.g. WebShop's original catalogue), read-only
            path = Path(data_dir).resolve()
            if not path.is_dir():
                raise ConfigError(f"data_dir {path} is not a folder")
            volumes[str(path)] = {"bind": "/data", "mode": "ro"}
            environment = {var: "/data" for var in ("ARLARENA_DATA_DIR", *fam.data_env)}
        n = num_workers or min(num_envs, os.cpu_count() or 1)
        token = secrets.token_urlsafe(24)  # the server binds 0.0.0.0 in the container: a token is required
        self._closed_docker = False
        _LIVE_POOLS.add(self)
        workers: list[ContainerWorker] = []
        try:
            import concurrent.futures as cf

            with cf.ThreadPoolExecutor(max_workers=n) as ex:
                futs = [
                    ex.submit(ContainerWorker, self.client, image, [spec_id], self.pool_id, token=token, volumes=volumes, environment=environment,
                              start_timeout_s=start_timeout_s, server_args=server_args)
                    for _ in range(n)
                ]
                workers = [f.result() for f in futs]
            super().__init__(spec_id, num_envs, workers, env_kwargs=env_kwargs, client_kwargs=client_kwargs)
        except BaseException:
            remove_pool_containers(self.client, self.pool_id)
            _LIVE_POOLS.discard(self)
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            if not self._closed_docker:
                self._closed_docker = True
                remove_pool_containers(self.client, self.pool_id)
                _LIVE_POOLS.discard(self)


__all__ = ["ContainerWorker", "DockerPool", "remove_pool_containers"]
