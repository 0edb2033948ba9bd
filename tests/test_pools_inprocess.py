import pytest

from arlarena_envs.errors import ConfigError
from arlarena_envs.policies import OraclePolicy, RandomPolicy, wrap_tagged
from arlarena_envs.pools import make_pool
from arlarena_envs.registry import make


def test_inprocess_pool_groups_and_parity():
    pool = make_pool("arlarena/Sokoban-v0", num_envs=4)
    firsts = pool.reset(seeds=[7, 7, 8, 8])
    assert firsts[0][0].state_hash == firsts[1][0].state_hash != firsts[2][0].state_hash
    results = pool.step(["up", None, "left", "left"])
    assert results[1] is None and results[0].observation.step == 1
    ref = make("arlarena/Sokoban-v0").unwrapped
    ref.reset(seed=7)
    assert ref.step_result("up") == results[0]
    assert len(pool.prompts()) == 4 and all(a in ("up", "down", "left", "right") for a in pool.oracle_actions())
    pool.close()


def test_pool_errors():
    with pytest.raises(ConfigError):
        make_pool("arlarena/Sokoban-v0", 2, backend="carrier-pigeon")
    pool = make_pool("arlarena/Sokoban-v0", 2)
    with pytest.raises(ConfigError):
        pool.reset(seeds=[1])
    pool.reset(seeds=[1, 2])
    with pytest.raises(ConfigError):
        pool.step(["up"])


def test_policies_random_is_seeded_and_oracle_solves():
    env = make("arlarena/Sokoban-v0").unwrapped
    obs, _ = env.reset_result(seed=4)
    a = [RandomPolicy(seed=1).act(obs) for _ in range(3)]
    assert a == [RandomPolicy(seed=1).act(obs) for _ in range(3)]
    oracle = OraclePolicy()
    while True:
        r = env.step_result(wrap_tagged(oracle.act(obs, env), "plan"))
        obs = r.observation
        if r.done:
            break
    assert r.info.won and r.info.parse_status.value == "ok"
