"""The Docker backend against a real engine: transcript parity in-process vs container for every
env family (Sokoban, WebShop, TextWorld, ALFWorld generated and official data mounted), a
`docker kill` mid-episode (typed error, restart, truncated episode, other envs continue), the
image runs as non-root, and no container of ours is left after the session.

Without a Docker engine these tests skip with the reason; with ARLARENA_REQUIRE_DOCKER=1 (CI)
a missing engine is a failure. Images come from `arlarena containers build` (cached)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

import arlarena_envs  # noqa: E402
from arlarena_envs.errors import RemoteEnvError, ServerLostError  # noqa: E402

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parent.parent
SOKOBAN = "arlarena/Sokoban-v0"
WEBSHOP = "arlarena/WebShop-v0"
TEXTWORLD = "arlarena/TextWorld-v0"
ALFWORLD = "arlarena/ALFWorld-v0"
ALFWORLD_SAMPLE = ROOT / ".." / "shared" / "data" / "alfworld-official-sample"


@pytest.fixture(scope="module")
def engine():
    from arlarena_envs.containers import DockerUnavailableError, docker_client

    try:
        client = docker_client()
    except DockerUnavailableError as e:
        if os.environ.get("ARLARENA_REQUIRE_DOCKER") == "1":
            pytest.fail(f"ARLARENA_REQUIRE_DOCKER=1 but Docker is not available: {e}")
        pytest.skip(f"Docker not available: {e}")
    yield client
    from arlarena_envs.containers import LABEL

    left = client.containers.list(all=True, filters={"label": f"{LABEL}=1"})
    left = [c for c in left if c.labels.get("arlarena.pool") != "compose"]
    for c in left:
        c.remove(force=True)
    assert not left, f"containers left behind: {[c.name for c in left]}"


@pytest.fixture(scope="module")
def images(engine):
    """Build (or find) the images of every registered family in one go (shared layers; the
    textworld image's wheelhouse builds fast-downward-textworld and jericho from source)."""
    from arlarena_envs.containers import FAMILIES, build

    return build([f for f in FAMILIES if _registered(f)])


def _registered(family):
    from arlarena_envs.containers import FAMILIES, registered

    return bool(registered(FAMILIES[family]))


@pytest.fixture(scope="module")
def sokoban_image(images):
    return images["sokoban"]


def _episode(env, seed, n=12):
    out = [env.reset_result(seed=seed)]
    for _ in range(n):
        a = env.oracle_action() or "up"
        out.append(a)
        r = env.step_result(a)
        out.append(r)
        if r.done:
            break
    out.append(env.step_result("<action>left</action>") if not r.done else None)
    return out


# (env id, seed of the single-client episode): games generated in the container (TextWorld's
# tw-make + Inform 7, ALFWorld's generator) must be the games generated here, so TextWorld and
# ALFWorld replay seed 5, which the pool's container has generated already (a new game costs
# seconds); Sokoban and WebShop take a fresh seed
ENV_PARAMS = [
    pytest.param(SOKOBAN, 9, id="sokoban"),
    pytest.param(
        WEBSHOP,
        9,
        id="webshop",
        marks=pytest.mark.skipif(not (ROOT / "registry" / "WebShop-v0.yaml").exists(), reason="registry/WebShop-v0.yaml does not exist yet"),
    ),
    pytest.param(TEXTWORLD, 5, id="textworld"),
    pytest.param(ALFWORLD, 5, id="alfworld"),
]


@pytest.mark.parametrize(("env_id", "episode_seed"), ENV_PARAMS)
def test_transcript_parity_inprocess_vs_container(engine, images, env_id, episode_seed):
    from arlarena_envs.pools import make_pool

    seeds = [0, 5, 5]
    local = [arlarena_envs.make(env_id).unwrapped for _ in seeds]
    from arlarena_envs.containers import family_of

    image = images[family_of(env_id).name]
    with make_pool(env_id, len(seeds), backend="docker", num_workers=1, image=image) as pool:
        assert pool.reset(seeds) == [e.reset_result(seed=s) for e, s in zip(local, seeds)]
        for _ in range(6):
            acts = [e.oracle_action() or "up" for e in local]
            assert pool.oracle_actions() == acts
            assert pool.prompts() == [e.prompt() for e in local]
            want = [e.step_result(a) if e.observation is not None else None for e, a in zip(local, acts)]
            got = pool.step(acts)
            assert got == want
            if any(r.done for r in want):
                break
        # a single remote client straight to the container gives the same transcript too
        w = pool.workers[0]
        remote = arlarena_envs.make(env_id, backend="remote", url=w.url, token=w.token).unwrapped
        try:
            assert _episode(remote, episode_seed) == _episode(arlarena_envs.make(env_id).unwrapped, episode_seed)
        finally:
            remote.close()


@pytest.mark.skipif(not ALFWORLD_SAMPLE.is_dir(), reason="shared official ALFWorld sample absent (../shared/data/alfworld-official-sample)")
def test_alfworld_official_data_mounted_read_only_gives_the_same_transcript(engine, images):
    """Official ALFWorld games mounted at /data (DockerPool(data_dir=...)) play as in-process."""
    import warnings

    from arlarena_envs.pools import make_pool

    sample = ALFWORLD_SAMPLE.resolve()
    kwargs = {"split": "valid_seen", "official_allow_partial": True}  # the sample has 12 of 140 games
    seeds = [0, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "N of 140 games cannot be played": expected of a sample
        local = [arlarena_envs.make(ALFWORLD, data_dir=sample, **kwargs).unwrapped for _ in seeds]
        with make_pool(ALFWORLD, len(seeds), backend="docker", env_kwargs=kwargs, num_workers=1, image=images["textworld"],
                       data_dir=sample, server_args=["--allow-kwarg", "official_allow_partial"]) as pool:
            want = [e.reset_result(seed=s) for e, s in zip(local, seeds)]
            assert pool.reset(seeds) == want
            assert all(w[1].extra["source"] == "official" for w in want)
            for _ in range(8):
                acts = [e.oracle_action() or "look" for e in local]
                assert pool.oracle_actions() == acts
                want = [e.step_result(a) if e.observation is not None else None for e, a in zip(local, acts)]
                assert pool.step(acts) == want
                if any(r.done for r in want):
                    break


def test_docker_kill_truncates_and_the_pool_restarts_the_container(engine, sokoban_image):
    from arlarena_envs.pools import make_pool

    with make_pool(SOKOBAN, 4, backend="docker", num_workers=2, image=sokoban_image) as pool, arlarena_envs.pools.make_pool(SOKOBAN, 4) as ref:
        seeds = [1, 1, 2, 2]
        assert pool.reset(seeds) == ref.reset(seeds)
        assert pool.step(["up"] * 4) == ref.step(["up"] * 4)
        victim = pool.workers[1]
        old_id = victim.container.id
        # the typed error a bare client sees when its container dies
        probe = arlarena_envs.make(SOKOBAN, backend="remote", url=victim.url, token=victim.token, retries=1, backoff=0.01).unwrapped
        probe.reset_result(seed=3)
        engine.api.kill(old_id)  # `docker kill`, mid-episode
        with pytest.raises(ServerLostError) as e:
            probe.step_result("up")
        assert isinstance(e.value, RemoteEnvError) and e.value.code == "server_lost"
        probe.close()
        got = pool.step(["left"] * 4)
        want = ref.step(["left"] * 4)
        for i in (1, 3):  # envs of worker 1
            assert got[i].truncated and "worker 1" in got[i].info.extra["truncated_reason"]
        for i in (0, 2):
            assert got[i] == want[i]
        assert pool.restarts == 1 and victim.container.id != old_id and victim.alive()
        assert pool.reset(seeds) == ref.reset(seeds)
        assert pool.step(["down"] * 4) == ref.step(["down"] * 4)
        pool_id = pool.pool_id
    assert not engine.containers.list(all=True, filters={"label": f"arlarena.pool={pool_id}"})


def test_image_runs_as_non_root_with_a_healthcheck(engine, sokoban_image):
    image = engine.images.get(sokoban_image)
    cfg = image.attrs["Config"]
    assert cfg["User"] and cfg["User"].split(":")[0] not in ("", "0", "root")
    assert cfg["Healthcheck"]["Test"]
    out = engine.containers.run(sokoban_image, entrypoint=["id", "-u"], command=[], remove=True, labels={"arlarena.managed": "1"})
    assert out.decode().strip() == "10001"


def test_image_tag_carries_version_and_fingerprint(engine, sokoban_image):
    from arlarena_envs import __version__
    from arlarena_envs.containers import fingerprint, FAMILIES

    assert sokoban_image == f"arlarena/sokoban:{__version__}-{fingerprint(FAMILIES['sokoban'])}"
    assert arlarena_envs.get_spec(SOKOBAN).fingerprint() in sokoban_image


def test_pool_start_error_leaves_no_container(engine, sokoban_image):
    from arlarena_envs.pools import make_pool

    with pytest.raises(ServerLostError):
        # the server refuses an unknown flag and the container exits at start
        make_pool(SOKOBAN, 1, backend="docker", num_workers=1, image=sokoban_image, server_args=["--no-such-flag"], start_timeout_s=30)
    assert not engine.containers.list(all=True, filters={"label": "arlarena.managed=1", "ancestor": sokoban_image})
