"""Sokoban: generation, rules, rewards, solver optimality against plain BFS, the env contract."""

from collections import deque

import gymnasium as gym
import numpy as np
import pytest

import arlarena_envs  # noqa: F401
from arlarena_envs.contract import ParseStatus
from arlarena_envs.errors import InvalidActionError, ResetNeededError
from arlarena_envs.sokoban import generate_level, solve
from arlarena_envs.sokoban.rules import ACTIONS, Level, State, is_solved, move, render


def bfs_optimal_length(level, start):
    """Independent breadth-first search: the reference for solver optimality."""
    seen = {start}
    q = deque([(start, 0)])
    while q:
        s, d = q.popleft()
        if is_solved(level, s):
            return d
        for a in ACTIONS:
            t, _ = move(level, s, a)
            if t not in seen:
                seen.add(t)
                q.append((t, d + 1))
    return None


@pytest.mark.parametrize("seed", range(25))
def test_levels_solvable_and_solver_optimal(seed):
    level, start, depth = generate_level(seed, (6, 6), 1, 30)
    plan = solve(level, start)
    assert plan is not None
    assert len(plan) == bfs_optimal_length(level, start) == depth
    s = start
    for a in plan:
        s, _ = move(level, s, a)
    assert is_solved(level, s)
    assert not (start.boxes & level.targets)


@pytest.mark.parametrize("seed", range(6))
def test_two_boxes_7x7_optimal(seed):
    level, start, depth = generate_level(seed, (7, 7), 2, 20)
    plan = solve(level, start)
    assert len(plan) == bfs_optimal_length(level, start) == depth


def test_generation_is_deterministic_and_varied():
    a = [generate_level(s)[:2] for s in range(20)]
    b = [generate_level(s)[:2] for s in range(20)]
    assert a == b
    assert len({render(l, s) for l, s in a}) == 20


def test_push_rules_and_rewards():
    # row 1: # P X O #   -> pushing right puts the box on the target
    walls = frozenset({(0, c) for c in range(5)} | {(2, c) for c in range(5)} | {(1, 0), (1, 4)})
    level = Level(3, 5, walls, frozenset({(1, 3)}))
    s = State((1, 1), frozenset({(1, 2)}))
    assert render(level, s, " ").splitlines()[1] == "# P X O #"
    t, delta = move(level, s, "right")
    assert delta == 1 and is_solved(level, t)
    assert render(level, t, " ").splitlines()[1] == "# _ P \u221a #"
    blocked, d2 = move(level, t, "right")  # box against the wall: no-op
    assert blocked == t and d2 == 0
    back, d3 = move(level, State((1, 2), frozenset({(1, 3)})), "left")
    assert d3 == 0 and back.player == (1, 1)


def test_env_rewards_follow_gym_sokoban():
    env = gym.make("arlarena/Sokoban-v0").unwrapped
    env.reset(seed=3)
    rewards = []
    while (a := env.oracle_action()) is not None:
        _, r, term, trunc, info = env.step(a)
        rewards.append(r)
    assert term and info["won"] and info["score"] == 1.0
    assert rewards[-1] == pytest.approx(-0.1 + 1 + 10)
    assert all(r == pytest.approx(-0.1) for r in rewards[:-1])
    assert len(rewards) == info["extra"]["optimal_length"]


def test_invalid_action_policies():
    env = gym.make("arlarena/Sokoban-v0").unwrapped
    obs, _ = env.reset(seed=1)
    o2, r, *_rest, info = env.step("<action>up</action>")  # strict: missing <think> -> penalised, still executed
    assert info["parse_status"] == "no_tag" and not info["valid_action"] and info["action"] == "up"
    assert r == pytest.approx(-0.2)
    _, r, *_rest, info = env.step("<think>x</think><action>fly</action>")
    assert info["parse_status"] == "inadmissible" and info["action"] is None and r == pytest.approx(-0.1)

    noop = gym.make("arlarena/Sokoban-v0", invalid_action_policy="noop").unwrapped
    noop.reset(seed=1)
    o, r, *_rest, info = noop.step("garbage")
    assert r == 0.0 and info["step"] == 1 and o == noop.reset(seed=1)[0]

    term = gym.make("arlarena/Sokoban-v0", invalid_action_policy="terminate").unwrapped
    term.reset(seed=1)
    _, r, terminated, truncated, info = term.step("")
    assert terminated and not truncated and r == pytest.approx(-0.1) and info["parse_status"] == "empty"
    with pytest.raises(ResetNeededError):
        term.step("up")


def test_tagged_only_mode_rejects_bare_actions():
    env = gym.make("arlarena/Sokoban-v0", action_format="tagged").unwrapped
    env.reset(seed=0)
    assert env.step("up")[4]["parse_status"] == ParseStatus.NO_TAG.value
    assert env.step("<think>t</think><action>up</action>")[4]["parse_status"] == "ok"


def test_step_type_errors_and_bytes():
    env = gym.make("arlarena/Sokoban-v0").unwrapped
    with pytest.raises(ResetNeededError):
        env.step("up")
    env.reset(seed=0)
    with pytest.raises(InvalidActionError):
        env.step(7)
    assert env.step(b"up")[4]["valid_action"]


def test_truncation_at_max_steps():
    env = gym.make("arlarena/Sokoban-v0", max_steps=3).unwrapped
    env.reset(seed=0)
    outs = [env.step("<think>x</think><action>fly</action>") for _ in range(3)]
    assert [o[3] for o in outs] == [False, False, True] and not outs[-1][2]


def test_group_reset_same_seed_same_state_hash():
    envs = [gym.make("arlarena/Sokoban-v0").unwrapped for _ in range(8)]
    firsts = [e.reset(seed=42)[1]["state_hash"] for e in envs]
    assert len(set(firsts)) == 1
    others = {gym.make("arlarena/Sokoban-v0").unwrapped.reset(seed=s)[1]["state_hash"] for s in range(30)}
    assert len(others) == 30
    # identical moves keep the group identical; a different move diverges
    a, b = envs[0], envs[1]
    assert a.step("up")[4]["state_hash"] == b.step("up")[4]["state_hash"]


def test_state_hash_tracks_state_not_text():
    env = gym.make("arlarena/Sokoban-v0").unwrapped
    env.reset(seed=5)
    h0 = env.observation.state_hash
    # a move into a wall leaves the state (and its hash) unchanged
    for a in ACTIONS:
        before = env.state
        _, _, _, _, info = env.step(a)
        if env.state == before:
            assert info["state_hash"] == h0
            break
        env.reset(seed=5)


def test_splits_and_task_index():
    env = gym.make("arlarena/Sokoban-v0", split="eval").unwrapped
    _, info = env.reset(seed=3)
    assert info["extra"]["level_seed"] == 1_000_003
    _, info = env.reset(options={"task_index": 499})
    assert info["extra"]["level_seed"] == 1_000_499
    with pytest.raises(ValueError):
        env.reset(options={"task_index": 500})
    with pytest.raises(ValueError):
        env.reset(options={"colour": 1})
    train = gym.make("arlarena/Sokoban-v0").unwrapped
    assert train.reset(seed=3)[1]["extra"]["level_seed"] == 3


def test_configurable_size_and_boxes():
    env = gym.make("arlarena/Sokoban-v0", dim_room=(8, 8), num_boxes=2, search_depth=40, max_steps=100).unwrapped
    obs, info = env.reset(seed=11)
    assert len(obs.splitlines()) == 8 and info["extra"]["num_boxes"] == 2
    while (a := env.oracle_action()) is not None:
        *_x, info = env.step(a)
    assert info["won"]


def test_prompt_has_history_and_actions():
    env = gym.make("arlarena/Sokoban-v0").unwrapped
    env.reset(seed=2)
    first = env.prompt()
    assert "already taken" not in first and "'up'" in first and "<action>" in first
    for a in ["up", "left", "down"]:
        env.step(a)
    p = env.prompt()
    assert "you have already taken 3 step(s)" in p.lower()
    assert "Action 2: 'left'" in p and "Action 3: 'down'" in p and "Action 1:" not in p


def test_np_random_owned_not_global():
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    env = gym.make("arlarena/Sokoban-v0").unwrapped
    env.reset(seed=9)
    env.reset()
    env.step("up")
    assert (np.random.get_state()[1] == before).all()


def test_text_spaces_share_their_charset_tables():
    """Every env holds two UnicodeText spaces; their charset tables (frozenset, dict) are built
    once and shared, so a server holding thousands of sessions does not keep thousands of copies."""
    from arlarena_envs.spaces import UnicodeText

    a, b = UnicodeText(20), UnicodeText(300, min_length=2, seed=3)
    assert a._char_set is b._char_set and a._char_index is b._char_index
    assert a.contains("any ünïcode ✓") and not b.contains("x") and b.contains("xy")
    s = b.sample()
    assert 2 <= len(s) <= 300 and all(ch in b._char_set for ch in s)
    assert a == UnicodeText(20) and a != b
