"""Rollout records and BC data, with a scripted engine (no model)."""

from __future__ import annotations

from arlarena_baselines.bc import collect_oracle_examples, oracle_response
from arlarena_baselines.rollout import RolloutEngine, collect_rollouts
from arlarena_envs.contract import ParseStatus, SamplingParams
from arlarena_envs.episodes import Reply
from arlarena_envs.parsing import parse_response
from arlarena_envs.pools import make_pool


class Scripted(RolloutEngine):
    """Answers every prompt with the next response of a fixed cycle."""

    def __init__(self, responses):
        self.responses, self.i, self.prompts = responses, 0, []

    def generate(self, prompts, sampling):
        out = []
        for p in prompts:
            self.prompts.append(p)
            out.append(Reply(self.responses[self.i % len(self.responses)], prompt_ids=[1, 2], response_ids=[3]))
            self.i += 1
        return out


def test_collect_rollouts_records_groups_turns_and_validity():
    pool = make_pool("arlarena/Sokoban-v0", 4, env_kwargs={"max_steps": 3, "action_format": "tagged", "history_length": 2})
    proto = pool.protocol
    assert proto.max_steps == 3 and proto.action_format == "tagged" and proto.history_length == 2
    engine = Scripted(["<think>x</think><action>up</action>", "up"])  # the bare "up" is invalid when tagged
    trajs = collect_rollouts(pool, engine, [11, 12], 2, SamplingParams(), group_offset=5)
    assert [t.group for t in trajs] == [5, 5, 6, 6]
    assert len({t.episode for t in trajs}) == 4
    assert [t.seed for t in trajs] == [11, 11, 12, 12]
    t0 = trajs[0]
    assert [s.turn for s in t0.turns] == list(range(len(t0.turns)))
    # group members start from the same state
    assert trajs[0].turns[0].state_hash == trajs[1].turns[0].state_hash != trajs[2].turns[0].state_hash
    statuses = {s.parse_status.value for t in trajs for s in t.turns}
    assert statuses <= {"ok", "no_tag"} and "no_tag" in statuses
    for t in trajs:
        for s in t.turns:
            if not s.valid_action:
                assert s.native_reward == s.reward + proto.invalid_action_penalty
                assert s.penalty == proto.invalid_action_penalty
            else:
                assert s.native_reward == s.reward and s.penalty == 0.0
            assert (s.prompt_ids, s.response_ids) == ([1, 2], [3])
    # the prompt is rebuilt each turn with the last observations (history 2)
    assert any("Prior to this step, you have already taken 2 step(s)" in p for p in engine.prompts)
    assert [s.prompt for t in trajs for s in t.turns] and all(s.prompt in engine.prompts for t in trajs for s in t.turns)
    pool.close()


def test_prompt_after_an_invalid_action_is_the_envs_own():
    """The recorded prompt of the turn after an invalid action is exactly what a fresh env,
    replayed with the same responses, renders (`env.prompt()`): the runner keeps no history."""
    from arlarena_envs.registry import make

    kw = {"max_steps": 4, "action_format": "tagged", "history_length": 2}
    pool = make_pool("arlarena/Sokoban-v0", 1, env_kwargs=kw)
    engine = Scripted(["<think>x</think><action>up</action>", "<action>up", "<think>y</think><action>left</action>"])
    (ep,) = collect_rollouts(pool, engine, [3], 1, SamplingParams())
    pool.close()
    assert ep.turns[1].parse_status is ParseStatus.TRUNCATED and ep.turns[1].penalty > 0
    env = make("arlarena/Sokoban-v0", **kw).unwrapped
    env.reset_result(seed=3)
    for t in ep.turns:
        assert t.prompt == env.prompt()
        env.step_result(t.response)
    assert "<action>up" not in ep.turns[2].prompt  # the invalid turn's history entry is the env's ('' action)


def test_bc_examples_are_valid_tagged_responses():
    pool = make_pool("arlarena/Sokoban-v0", 2, env_kwargs={"max_steps": 20})
    ex = collect_oracle_examples(pool, [500000, 500001, 500002])
    assert len(ex) >= 3
    for e in ex:
        parsed = parse_response(e.response, "strict", admissible=["up", "down", "left", "right"])
        assert parsed.status.value == "ok"
        assert e.prompt.startswith("You are an expert agent playing Sokoban")
    assert oracle_response("left") == "<think>left</think><action>left</action>"
    pool.close()


def test_tiny_tokenizer_roundtrip_keeps_pre_tokenizer(tmp_path):
    """A saved tiny policy reloads with the same tokenization (AutoTokenizer alone would not)."""
    from arlarena_baselines.tiny import build_tiny_model, load_tokenizer, save_policy, train_tokenizer

    corpus = ["#\t_\tP\t#\n", "<think>up</think><action>up</action>"] * 20
    tok = train_tokenizer(corpus, vocab_size=300)
    model = build_tiny_model(len(tok), 16, 1, 2, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    save_policy(model, tok, tmp_path / "p")
    back = load_tokenizer(tmp_path / "p")
    for text in corpus[:2]:
        assert back(text)["input_ids"] == tok(text)["input_ids"]
    assert back.eos_token == "<|im_end|>" and back.chat_template


def test_empg_reads_turn_indices_when_the_prompt_has_no_history():
    """history_length=0: the prompt says nothing about the turn, yet EMPG's next-turn bonus
    follows each row's TurnRecord.turn (the reference's prompt regex reads 0 on every row)."""
    import torch

    from arlarena_baselines import advantages as A
    from arlarena_baselines.batch import TurnBatch
    from arlarena_baselines.config import load_config
    from arlarena_baselines.estimators import compute_advantages

    pool = make_pool("arlarena/Sokoban-v0", 2, env_kwargs={"max_steps": 3, "action_format": "tagged", "history_length": 0})
    episodes = collect_rollouts(pool, Scripted(["<think>x</think><action>up</action>", "up"]), [4], 2, SamplingParams())
    pool.close()
    batch = TurnBatch.from_episodes(episodes)
    assert all("step(s)" not in t.prompt for t in batch.turns)
    assert [t.turn for t in batch.turns] == [0, 1, 2, 0, 1, 2]
    algo = load_config("empg").algorithm
    entropy = torch.linspace(0.1, 1.0, len(batch)).unsqueeze(-1)
    got = compute_advantages(batch, entropy, algo)
    from arlarena_baselines.estimators import row_scores, token_level_rewards

    grpo = A.compute_grpo_outcome_advantage(token_level_rewards(row_scores(batch, algo), batch.mask), batch.mask, batch.group, batch.episode)
    want = A.compute_empg_advantage(grpo, entropy, batch.mask, [0, 1, 2, 0, 1, 2], batch.episode)
    all_zero = A.compute_empg_advantage(grpo, entropy, batch.mask, [0] * 6, batch.episode)
    assert torch.equal(got, want) and not torch.equal(got, all_zero)


def test_unknown_estimator_and_loss_names_raise_typed_errors():
    import pytest

    from arlarena_baselines.estimators import get_estimator
    from arlarena_baselines.losses import get_policy_loss_fn
    from arlarena_envs.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="algorithm.adv_estimator"):
        get_estimator("gae")
    with pytest.raises(UnknownNameError, match="algorithm.loss_mode"):
        get_policy_loss_fn("ppo2")


def test_trainer_pools_play_the_configured_protocol(tmp_path):
    """env.max_steps, env.action_format and protocol keys of env.env_kwargs reach the pool's envs."""
    from arlarena_baselines.config import load_config
    from arlarena_baselines.train import Trainer

    cfg = load_config("demo_cpu", ["env.max_steps=3", "env.env_kwargs={history_length: 2}"])
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    pool = trainer._pool(1)
    proto = pool.protocol
    assert proto.max_steps == 3 and proto.action_format == "tagged" and proto.history_length == 2
    pool.close()


def test_a_run_records_the_code_and_command_of_its_first_launch(tmp_path, monkeypatch):
    """provenance.json: what a leaderboard row of the run's checkpoints cites as the training
    code; a resumed run keeps its first launch's record."""
    import json
    import sys

    from arlarena_baselines.config import load_config
    from arlarena_baselines.train import Trainer

    from arlarena_envs.leaderboard.trained import git_commit

    monkeypatch.setattr(sys, "argv", ["arlarena", "train", "--config", "demo_cpu"])
    Trainer(load_config("demo_cpu"), run_dir=tmp_path / "run")
    first = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert first["command"] == "arlarena train --config demo_cpu"
    assert first["code_commit"] == git_commit()  # None outside a git checkout, else HEAD[+dirty]
    monkeypatch.setattr(sys, "argv", ["arlarena", "train", "--config", "demo_cpu", "--resume"])
    Trainer(load_config("demo_cpu"), run_dir=tmp_path / "run")
    assert json.loads((tmp_path / "run" / "provenance.json").read_text()) == first
