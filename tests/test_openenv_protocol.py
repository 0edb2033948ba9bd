"""`arlarena serve` speaks OpenEnv's protocol: episodes played with the REAL OpenEnv client
(`openenv` package: GenericEnvClient and our typed EnvClient subclass) give the same transcript
as the in-process env (observations, state hashes, rewards, parse statuses, done flags)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("openenv.core.generic_client", reason="needs OpenEnv: pip install 'arlarena-envs[openenv]'")
httpx = pytest.importorskip("httpx")

from openenv.core.generic_client import GenericEnvClient  # noqa: E402

import arlarena_envs  # noqa: E402,F401
from arlarena_envs.pools.subprocess import ServerProcess  # noqa: E402
from arlarena_envs.registry import create_env  # noqa: E402
from arlarena_envs.server.openenv import OpenEnvAction, OpenEnvObservation  # noqa: E402
from arlarena_envs.server.openenv_client import ArlArenaOpenEnv, openenv_url  # noqa: E402

SOKOBAN, WEBSHOP = "arlarena/Sokoban-v0", "arlarena/WebShop-v0"
# raw model text of every parse outcome, plus bare actions
ODD_ACTIONS = ["<think>push</think><action>down</action>", "bogus", "", "<action>up</action><action>up</action>", "RIGHT "]


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess([SOKOBAN, WEBSHOP], extra_args=["--max-sessions", "8"])
    try:
        yield srv
    finally:
        srv.close()


def _local_transcript(env_id: str, seed: int, n_oracle: int, odd: list[str]) -> tuple[list[str], list[dict]]:
    """Actions played (oracle moves, then `odd`) and the in-process rows for reset + each step."""
    env = create_env(env_id=env_id).unwrapped
    obs, info = env.reset_result(seed=seed)
    rows = [_row(obs.text, obs.state_hash, None, False, info.parse_status.value, info.won, info.score, env.prompt(), obs.admissible_actions)]
    actions: list[str] = []
    for k in range(n_oracle + len(odd)):
        a = env.oracle_action() if k < n_oracle else odd[k - n_oracle]
        if a is None:
            break
        r = env.step_result(a)
        actions.append(a)
        rows.append(_row(r.observation.text, r.observation.state_hash, r.reward, r.done, r.info.parse_status.value,
                         r.info.won, r.info.score, env.prompt(), r.observation.admissible_actions))
        if r.done:
            break
    env.close()
    return actions, rows


def _row(text, state_hash, reward, done, parse_status, won, score, prompt, admissible) -> dict:
    return {"text": text, "state_hash": state_hash, "reward": reward, "done": done, "parse_status": parse_status,
            "won": won, "score": score, "prompt": prompt, "admissible_actions": admissible}


def _remote_row(r) -> dict:
    o = r.observation if isinstance(r.observation, dict) else r.observation.model_dump()
    return _row(o["text"], o["state_hash"], r.reward, r.done, o["parse_status"], o["won"], o["score"], o["prompt"],
                o["admissible_actions"])


@pytest.mark.parametrize("env_id,seed,n_oracle", [(SOKOBAN, 5, 3), (SOKOBAN, 11, 40), (WEBSHOP, 2, 3), (WEBSHOP, 7, 20)])
def test_generic_client_transcript_equals_in_process(server, env_id, seed, n_oracle):
    actions, local = _local_transcript(env_id, seed, n_oracle, ODD_ACTIONS if n_oracle < 10 else [])
    with GenericEnvClient(base_url=openenv_url(server.url, env_id)).sync() as client:
        remote = [_remote_row(client.reset(seed=seed))]
        for a in actions:
            remote.append(_remote_row(client.step({"text": a})))
    assert remote == local
    if n_oracle >= 10:  # the expert finishes the episode: won and done came through the protocol
        assert remote[-1]["done"] and remote[-1]["won"]


def test_typed_client_state_and_group_seeding(server):
    """Two sessions reset with one seed start in one state (a GRPO group); state() says where from."""
    url = openenv_url(server.url, SOKOBAN)
    with ArlArenaOpenEnv(base_url=url).sync() as a, ArlArenaOpenEnv(base_url=url).sync() as b:
        ra, rb = a.reset(seed=9, episode_id="ep-a"), b.reset(seed=9)
        assert isinstance(ra.observation, OpenEnvObservation)
        assert ra.observation.state_hash == rb.observation.state_hash and ra.observation.text == rb.observation.text
        s = a.step(OpenEnvAction(text="<think>x</think><action>left</action>"))
        assert s.observation.parse_status in ("ok", "inadmissible")
        st = a.state()
        assert (st.episode_id, st.step_count, st.seed, st.env_id) == ("ep-a", 1, 9, SOKOBAN)
        assert st.state_hash == s.observation.state_hash


def test_http_routes_and_errors(server):
    base = openenv_url(server.url, SOKOBAN)
    with httpx.Client(timeout=30) as http:
        schema = http.get(base + "/schema").json()
        props = schema["observation"]["properties"]
        for field in ("state_hash", "parse_status", "won", "score", "prompt", "text"):
            assert field in props  # declared, so no OpenEnv client drops them
        assert schema["action"]["required"] == ["text"]
        assert http.get(base + "/health").json() == {"status": "healthy"}
        assert http.get(base + "/metadata").json()["name"] == SOKOBAN
        first = http.post(base + "/reset", json={"seed": 5}).json()
        env = create_env(env_id=SOKOBAN).unwrapped
        obs, _ = env.reset_result(seed=5)
        assert first["observation"]["state_hash"] == obs.state_hash and first["done"] is False
        assert http.post(base + "/step", json={"action": {"text": "up"}}).status_code == 409
        assert http.get(server.url + "/openenv/Nope-v0/schema").status_code == 404
        assert http.get(server.url + "/openenv").json()["envs"][SOKOBAN] == "/openenv/Sokoban-v0"
    with GenericEnvClient(base_url=base).sync() as client:
        with pytest.raises(RuntimeError, match="reset"):  # step before reset: an OpenEnv error frame
            client.step({"text": "up"})
        with pytest.raises(RuntimeError, match="VALIDATION_ERROR"):  # unknown action field
            client.step({"txt": "up"})
        client.reset(seed=1)
        assert client.step({"text": "up"}).observation["step"] == 1  # the session survived the errors


def test_capacity_is_shared_with_our_sessions(server):
    """max_sessions=8 counts OpenEnv sessions: the ninth connection gets CAPACITY_REACHED."""
    url = openenv_url(server.url, SOKOBAN)
    clients = []
    try:
        for _ in range(8):
            c = GenericEnvClient(base_url=url).sync()
            c.__enter__()
            c.reset(seed=0)
            clients.append(c)
        extra = GenericEnvClient(base_url=url).sync()
        with pytest.raises((RuntimeError, ConnectionError), match="CAPACITY_REACHED|sessions"):
            extra.__enter__()
            extra.reset(seed=0)
        extra.close()
    finally:
        for c in clients:
            c.close()
