"""The Apptainer/Singularity image (containers/apptainer/arlarena.def) against the real tool: a SIF
of the Sokoban family built offline from the wheelhouse and the offline base, its server answers
/health on loopback and plays an episode exactly as in-process.

Skips with the reason where Apptainer does not install (Debian bookworm, this project's CI: only
sid packages it); ARLARENA_REQUIRE_APPTAINER=1 turns the skip into a failure. ARLARENA_APPTAINER
may name a wrapper command (docs/containers.md shows one that runs a sid chroot's apptainer)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

import arlarena_envs  # noqa: E402
from arlarena_envs.errors import MissingDependencyError  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
SOKOBAN = "arlarena/Sokoban-v0"


def test_definition_has_the_required_pieces():
    text = (ROOT / "containers" / "apptainer" / "arlarena.def").read_text()
    assert "Bootstrap: docker-archive" in text and "From: {{ BASE_TAR }}" in text  # offline: no registry
    assert "--no-index --find-links" in text and "python3 -m venv /opt/venv" in text
    assert "exec /opt/venv/bin/arlarena serve" in text and "pip check" in text


@pytest.fixture(scope="module")
def apptainer():
    from arlarena_envs.containers import apptainer_command

    try:
        return apptainer_command()
    except MissingDependencyError as e:
        if os.environ.get("ARLARENA_REQUIRE_APPTAINER") == "1":
            pytest.fail(f"ARLARENA_REQUIRE_APPTAINER=1 but: {e}")
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def sif(apptainer, tmp_path_factory):
    from arlarena_envs.containers import build_sif

    # the SIF's folder must be visible to a wrapped apptainer at the same path: a temp folder
    return build_sif("sokoban", tmp_path_factory.mktemp("sif") / "sokoban.sif")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sif_serves_an_episode_like_in_process(apptainer, sif, tmp_path):
    from arlarena_envs.pools.remote import wait_healthy

    port = _free_port()
    log = tmp_path / "server.log"
    # options only: the runscript serves the family's env ids (Sokoban's: just SOKOBAN)
    with open(log, "wb") as out:
        server = subprocess.Popen([*apptainer, "run", str(sif), "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, 120, alive=lambda: server.poll() is None)
        except Exception as e:
            raise AssertionError(f"the SIF's server did not become healthy ({e}); its output:\n{log.read_text()[-3000:]}") from e
        remote = arlarena_envs.make(SOKOBAN, backend="remote", url=url).unwrapped
        local = arlarena_envs.make(SOKOBAN).unwrapped
        try:
            assert remote.reset_result(seed=3) == local.reset_result(seed=3)
            for _ in range(500):
                a = local.oracle_action() or "up"
                assert remote.oracle_action() == a
                want = local.step_result(a)
                assert remote.step_result(a) == want
                if want.done:
                    break
            assert want.done  # one whole episode
        finally:
            remote.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
