"""The Ray pool on a real multi-process Ray cluster: a head node and a second node, each started
with the `ray` command line (two raylets, one GCS), on loopback only. The pool's actors are
placed on both nodes; one actor's process is SIGKILLed (a crash, as the subprocess pool's test
does to a worker) and the pool must replace it, truncate its envs' episodes with a reason and
keep the other node's envs going. Every process the fixture starts is in a process group of
its own and is killed in the fixture's finally block (never `ray stop`, which stops every Ray
on the machine)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# Loopback only, on 127.0.0.2: Ray rewrites "127.0.0.1"/"localhost" addresses to the
# machine's outward IP (to be reachable from other hosts); other 127/8 addresses it keeps.
NODE_IP = "127.0.0.2"
# token authentication with a fresh token for this test session (nodes and driver read it from
# the environment; the user's ~/.ray/auth_token is neither used nor written). Ray reads these
# when it is imported, so before any test imports it.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))
ray = pytest.importorskip("ray", reason="the Ray cluster tests need ray (pip install 'arlarena-envs[ray]')")

from arlarena_envs.pools import make_pool  # noqa: E402

SOKOBAN = "arlarena/Sokoban-v0"
SEEDS = [11, 11, 42, 42]
pytestmark = pytest.mark.slow


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((NODE_IP, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ray_node(args: list[str], log: Path) -> subprocess.Popen:
    """`ray start --block ...` in its own process group: killing the group stops that node only."""
    ray_cli = Path(sys.executable).with_name("ray")
    cmd = [str(ray_cli), "start", "--block", f"--node-ip-address={NODE_IP}", "--num-cpus=1", "--disable-usage-stats", *args]
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of that node is left (raylet, workers)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    tmp = Path(tempfile.mkdtemp(prefix="arlarena-ray-"))
    ports = _free_ports(14)
    head_port = ports[0]

    def node_ports(p: list[int]) -> list[str]:
        return [f"--node-manager-port={p[0]}", f"--object-manager-port={p[1]}", f"--metrics-export-port={p[2]}",
                f"--dashboard-agent-listen-port={p[3]}", f"--dashboard-agent-grpc-port={p[4]}", f"--runtime-env-agent-port={p[5]}"]

    nodes: list[subprocess.Popen] = []
    try:
        # --temp-dir: the head records its address as the machine's default cluster
        # (ray_current_cluster) there, not in /tmp/ray where a later plain ray.init() would find it
        nodes.append(_ray_node(["--head", f"--port={head_port}", "--include-dashboard=false", f"--temp-dir={tmp / 'ray'}",
                                *node_ports(ports[2:8])], tmp / "head.log"))
        address = f"{NODE_IP}:{head_port}"
        _wait_for_log(tmp / "head.log", nodes, tmp)
        _wait_for_nodes(address, 1, nodes, tmp)
        nodes.append(_ray_node([f"--address={address}", *node_ports(ports[8:14])], tmp / "node2.log"))
        _wait_for_log(tmp / "node2.log", nodes, tmp)
        _wait_for_nodes(address, 2, nodes, tmp)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for proc in reversed(nodes):
            _stop(proc)


def _wait_for_log(log: Path, procs: list[subprocess.Popen], logs: Path, timeout_s: float = 90.0) -> None:
    """Wait until `ray start` says its node runs (connecting a driver earlier blocks for minutes)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if "Ray runtime started" in log.read_text(errors="replace"):
            return
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"a ray node exited with {p.returncode}: {_tail(logs)}")
        time.sleep(0.2)
    raise AssertionError(f"{log.name}: ray node not started after {timeout_s:g} s: {_tail(logs)}")


def _wait_for_nodes(address: str, n: int, procs: list[subprocess.Popen], logs: Path, timeout_s: float = 90.0) -> None:
    """Connect a driver and wait until `n` nodes are alive (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"a ray node exited with {p.returncode}: {_tail(logs)}")
        try:
            if not ray.is_initialized():
                ray.init(address=address, _node_ip_address=NODE_IP, log_to_driver=False)
            if sum(1 for nd in ray.nodes() if nd["Alive"]) >= n:
                return
        except ConnectionError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{n} ray nodes not alive after {timeout_s:g} s: {_tail(logs)}")


def _tail(logs: Path) -> str:
    return "\n".join(f"{f.name}: {f.read_text(errors='replace')[-1500:]}" for f in sorted(logs.glob("*.log")))


def test_ray_pool_on_two_nodes_survives_an_actor_crash(cluster):
    with make_pool(SOKOBAN, len(SEEDS), backend="ray", num_workers=2, address=cluster) as pool, make_pool(SOKOBAN, len(SEEDS)) as ref:
        nodes = ray.get([a.node_id.remote() for a in pool.actors])
        assert len(set(nodes)) == 2, "one actor per node (each node has one CPU)"
        assert pool.reset(SEEDS) == ref.reset(SEEDS)
        assert pool.step(["up", "left", "down", "right"]) == ref.step(["up", "left", "down", "right"])

        victim = 1
        pid = ray.get(pool.actors[victim].pid.remote())
        os.kill(pid, signal.SIGKILL)  # the actor's worker process crashes on its node
        lost = [i for i, (a, _) in enumerate(pool.assignment) if a == victim]
        kept = [i for i in range(len(SEEDS)) if i not in lost]
        got = pool.step(["left"] * len(SEEDS))
        want = ref.step(["left"] * len(SEEDS))
        for i in lost:
            assert got[i].truncated and not got[i].terminated and got[i].reward == 0.0
            assert f"ray actor {victim}" in got[i].info.extra["truncated_reason"]
        for i in kept:
            assert got[i] == want[i]  # the other node's envs keep going
        assert pool.restarts == 1

        # the replacement takes the freed CPU: the pool spans both nodes again and plays on
        assert set(ray.get([a.node_id.remote() for a in pool.actors])) == set(nodes)
        assert ray.get(pool.actors[victim].pid.remote()) != pid
        assert pool.reset(SEEDS) == ref.reset(SEEDS)
        assert pool.step(["down"] * len(SEEDS)) == ref.step(["down"] * len(SEEDS))
