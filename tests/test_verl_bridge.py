"""The verl bridge against the REAL verl (0.9.x; run in the separate verl venv, `.ci/verl.sh`):

* our loss and estimator are found through verl's registries and equal ours on the same tensors;
* our agent loop plays real Sokoban and WebShop episodes inside verl's rollout classes (verl's
  AgentLoopBase, AgentLoopWorker post-processing) with a scripted stand-in for verl's LLM server,
  and `turn_rows` makes the batch verl's actor consumes: one row per turn, masks, uids,
  trajectory ids, step returns, anchors; advantages through verl's registry equal our trainer's;
* the recipe presets load with verl's own Hydra config machinery and its config dataclasses.
"""

from __future__ import annotations

import ast
import asyncio
import re

import pytest

pytest.importorskip("verl", reason="the verl bridge tests run in the verl venv (.ci/verl.sh)")
torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker, DictConfigWrap, _agent_loop_registry  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402
from verl.workers.rollout.replica import TokenOutput  # noqa: E402

from arlarena_envs.contract import EpisodeRecord  # noqa: E402
from arlarena_envs.registry import create_env  # noqa: E402

from arlarena_baselines import losses as loss_lib  # noqa: E402
from arlarena_baselines.batch import TurnBatch  # noqa: E402
from arlarena_baselines.estimators import ESTIMATORS, row_scores, token_level_rewards  # noqa: E402
from arlarena_baselines.tiny import train_tokenizer  # noqa: E402
from arlarena_baselines.verl import recipe  # noqa: E402
from arlarena_baselines.verl.agent_loop import AGENT_NAME, EPISODE_KEY, ArlArenaAgentLoop  # noqa: E402
from arlarena_baselines.verl.turns import compute_advantages, episodes_of, filter_episode_groups, task_rows, turn_rows  # noqa: E402
from arlarena_baselines.verl_adapter import ADV_NAME, LOSS_NAME, register_with_verl  # noqa: E402

SOKOBAN, WEBSHOP = "arlarena/Sokoban-v0", "arlarena/WebShop-v0"
ADMISSIBLE = re.compile(r"admissible actions of the current situation are: (\[.*?\])\.", re.S)
TASK = re.compile(r"Your task is to: (.*)")


@pytest.fixture(scope="module")
def tokenizer():
    corpus = []
    for env_id in (SOKOBAN, WEBSHOP):
        env = create_env(env_id=env_id).unwrapped
        for seed in range(3):
            env.reset_result(seed=seed)
            corpus.append(env.prompt())
            a = env.oracle_action()
            if a:
                env.step_result(a)
                corpus.append(env.prompt())
    return train_tokenizer(corpus + ["<think>go</think><action>up</action>"] * 4, vocab_size=800)


class ScriptedServer:
    """Stands in for verl's LLM server client (`server_manager.generate`): reads the admissible
    actions from the prompt and answers with one of them in the tagged format (every 4th call a
    malformed reply), deterministically from the prompt text; returns token ids and log-probs."""

    def __init__(self, tokenizer):
        self.tok, self.calls = tokenizer, 0

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kw) -> TokenOutput:
        self.calls += 1
        text = self.tok.decode(prompt_ids, skip_special_tokens=True)
        m = ADMISSIBLE.findall(text)
        actions = ast.literal_eval(m[-1]) if m else ["up", "down", "left", "right"]
        pick = actions[(len(text) + self.calls) % len(actions)]
        if pick.startswith("search["):
            task = TASK.findall(text)
            pick = f"search[{task[-1][:60] if task else 'item'}]"
        reply = f"<think>go</think><action>{pick}</action>" if self.calls % 4 else "I refuse"
        ids = self.tok(reply, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
        return TokenOutput(token_ids=ids, log_probs=[-0.25] * len(ids))


def verl_config(prompt_length=6144, response_length=64):
    cfg = recipe.compose("sampo_webshop", [f"data.max_prompt_length={prompt_length}", f"data.max_response_length={response_length}"])
    return cfg


def make_loop(cfg, tokenizer, server, env_id, **env_kwargs):
    return ArlArenaAgentLoop(
        trainer_config=DictConfigWrap(cfg), server_manager=server, tokenizer=tokenizer, processor=None,
        dataset_cls=None, data_config=DictConfigWrap(cfg.data), hf_model_type="qwen2", env_id=env_id,
        env_kwargs=env_kwargs, tools=None,
    )


def verl_worker(cfg, tokenizer):
    """verl's AgentLoopWorker, for its per-trajectory and batch post-processing only (its
    __init__ loads a model config from disk and starts tracing: not needed for that)."""
    w = object.__new__(AgentLoopWorker)
    w.config, w.rollout_config, w.tokenizer, w.processor = cfg, cfg.actor_rollout_ref.rollout, tokenizer, None
    w.reward_loop_worker_handles, w.distillation_enabled, w.mm_processor_kwargs = None, False, {}
    return w


def play(cfg, tokenizer, env_id, seeds, group_size, **env_kwargs):
    """Trajectories of `seeds` x `group_size` through our agent loop and verl's post-processing:
    the DataProto verl's AgentLoopWorker.generate_sequences returns."""
    server = ScriptedServer(tokenizer)
    worker = verl_worker(cfg, tokenizer)
    rows = task_rows(env_id, seeds)

    async def one(row, uid):
        loop = make_loop(cfg, tokenizer, server, env_id, **env_kwargs)
        kwargs = {"raw_prompt": row["prompt"], "extra_info": row["extra_info"], "uid": uid, "agent_name": AGENT_NAME}
        out = await loop.run({"temperature": 1.0}, **kwargs)
        return await worker._agent_loop_postprocess(out, False, **kwargs)

    async def everything():
        return await asyncio.gather(*[one(r, f"uid-{i}") for i, r in enumerate(rows) for _ in range(group_size)])

    outs = asyncio.run(everything())
    uids = np.array([f"uid-{i}" for i in range(len(rows)) for _ in range(group_size)], dtype=object)
    return worker._postprocess(outs, input_non_tensor_batch={"uid": uids}), server


def test_loss_and_estimator_through_verls_registries():
    register_with_verl()
    register_with_verl()  # idempotent: verl refuses to re-register an estimator name
    loss_fn = core_algos.get_policy_loss_fn(LOSS_NAME)
    adv_fn = core_algos.get_adv_estimator_fn(ADV_NAME)
    g = torch.Generator().manual_seed(0)
    B, T = 6, 9
    mask = (torch.arange(T)[None] < torch.tensor([9, 4, 7, 1, 9, 5])[:, None]).float()
    old, new = torch.randn(B, T, generator=g) - 2, torch.randn(B, T, generator=g) - 2
    adv = torch.randn(B, T, generator=g) * mask
    cfg = recipe.compose("sampo_alfworld")
    from verl.utils.config import omega_conf_to_dataclass

    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    theirs, metrics = loss_fn(old, new, adv, mask, "seq-mean-token-mean", actor, None)
    ours = loss_lib.compute_policy_loss_gspo(old, new, adv, mask, clip_ratio=0.2, clip_ratio_low=3e-3, clip_ratio_high=4e-3)
    assert torch.equal(theirs, ours.pg_loss) and metrics["actor/pg_clipfrac"] == ours.pg_clipfrac.item()

    tlr = torch.zeros(B, T)
    tlr[torch.arange(B), mask.sum(-1).long() - 1] = torch.tensor([1.0, 1.0, 0.0, 0.0, 2.0, 0.0])
    index, traj = ["a", "a", "a", "b", "b", "b"], [0, 0, 1, 2, 3, 3]
    anchors, steps = ["s0", "s1", "s0", "t0", "t0", "t1"], torch.tensor([0.9, 1.0, 0.0, 0.0, 1.9, 2.0])
    theirs_adv, _ = adv_fn(tlr, mask, index=np.array(index, dtype=object), config=recipe.estimator_config(cfg),
                           step_rewards=steps, anchor_obs=anchors, traj_index=traj)
    from arlarena_baselines import advantages as adv_lib

    ours_adv = adv_lib.compute_gigpo_outcome_advantage(tlr, steps, mask, anchors, index, traj, 1e-6, 1.0, "mean_std_norm")
    assert torch.equal(theirs_adv, ours_adv)


@pytest.mark.parametrize("env_id,seeds,env_kwargs", [
    (SOKOBAN, [3, 8], {"max_steps": 6, "search_depth": 6}),
    (WEBSHOP, [2, 5], {"max_steps": 5}),
])
def test_agent_loop_plays_real_episodes_and_makes_verls_turn_batch(tokenizer, env_id, seeds, env_kwargs):
    register_with_verl()
    assert _agent_loop_registry[AGENT_NAME]["_target_"].endswith("ArlArenaAgentLoop")
    cfg = verl_config()
    G = 3
    data, server = play(cfg, tokenizer, env_id, seeds, G, **env_kwargs)
    assert len(data) == len(seeds) * G and EPISODE_KEY in data.non_tensor_batch
    assert "rm_scores" in data.batch  # verl's own reward placement of the episode reward

    episodes, uids = episodes_of(data)
    # the episodes are the env's own: replaying the responses in-process gives the same transcript
    for ep in episodes:
        env = create_env(env_id=env_id, action_format="tagged", **env_kwargs).unwrapped
        obs, _ = env.reset_result(seed=ep.seed)
        for t in ep.turns:
            assert (t.state_hash, t.prompt) == (obs.state_hash, env.prompt())
            r = env.step_result(t.response)
            assert (r.reward, r.info.parse_status, r.done) == (t.reward, t.parse_status, t.done)
            obs = r.observation
    # a group shares its task: same first state for the G rollouts of a prompt
    for g in set(uids):
        firsts = {e.turns[0].state_hash for e, u in zip(episodes, uids) if u == g}
        assert len(firsts) == 1
    assert server.calls == sum(len(e.turns) for e in episodes)

    algo = recipe.algorithm_config(cfg)
    rollout = cfg.actor_rollout_ref.rollout
    turns = turn_rows(episodes, uids, pad_token_id=tokenizer.pad_token_id, prompt_length=rollout.prompt_length,
                      response_length=rollout.response_length, algorithm=algo)
    n_rows = sum(len(e.turns) for e in episodes)
    assert len(turns) == n_rows
    b, nt = turns.batch, turns.non_tensor_batch
    P, R = rollout.prompt_length, rollout.response_length
    assert b["prompts"].shape == (n_rows, P) and b["responses"].shape == (n_rows, R)
    assert b["input_ids"].shape == b["attention_mask"].shape == b["position_ids"].shape == (n_rows, P + R)
    tb = TurnBatch.from_episodes(episodes)
    for i, t in enumerate(tb.turns):
        n = len(t.response_ids)
        assert b["responses"][i, :n].tolist() == t.response_ids and b["response_mask"][i].sum() == n
        assert b["prompts"][i, P - len(t.prompt_ids):].tolist() == t.prompt_ids
        assert b["attention_mask"][i].sum() == len(t.prompt_ids) + n
        assert b["rollout_log_probs"][i, :n].tolist() == t.logprobs
    assert list(nt["anchor_obs"]) == [t.state_hash for t in tb.turns]
    assert len(set(nt["traj_uid"])) == len(episodes) and set(nt["uid"]) == set(uids)
    # rewards and advantages: the same as our own trainer's on the same turns
    scores = row_scores(tb, algo)
    assert torch.equal(b["token_level_rewards"].sum(-1), scores)
    mask = b["response_mask"].float()
    ours = ESTIMATORS["gigpo"](tb, token_level_rewards(scores, tb.mask), torch.zeros_like(tb.mask), algo)
    compute_advantages(turns, ADV_NAME, recipe.estimator_config(cfg))
    W = tb.width
    assert torch.allclose(turns.batch["advantages"][:, :W], ours, atol=1e-6)
    assert torch.all(turns.batch["advantages"][:, W:] == 0) and torch.all(turns.batch["advantages"] * (1 - mask) == 0)
    assert float(turns.batch["advantages"].abs().sum()) > 0


def test_dynamic_filtering_keeps_informative_groups():
    def ep(group, r):
        from arlarena_envs.contract import ParseStatus, TurnRecord

        t = TurnRecord(turn=0, observation="o", state_hash="h", response="x", action="a", parse_status=ParseStatus.OK,
                       format_valid=True, reward=r, native_reward=r, terminated=True, truncated=False)
        return EpisodeRecord(env_id=SOKOBAN, split=None, seed=group, task_index=None, task="t", group=group, turns=[t])

    eps = [ep(0, 1.0), ep(0, 1.0), ep(1, 0.0), ep(1, 1.0), ep(2, 0.0), ep(2, 0.0)]
    assert [e.group for e in filter_episode_groups(eps, 3, last_try=False)] == [1, 1]
    assert [e.group for e in filter_episode_groups(eps, 2, last_try=True)] == [1, 1, 0, 0]


@pytest.mark.parametrize("preset", recipe.PRESETS)
def test_recipe_presets_load_with_verls_config_machinery(preset):
    from verl.trainer.config import AlgoConfig
    from verl.utils.config import omega_conf_to_dataclass

    cfg = recipe.compose(preset, ["trainer.n_gpus_per_node=8", "arlarena.backend=ray"])
    algo = omega_conf_to_dataclass(cfg.algorithm)
    assert isinstance(algo, AlgoConfig)
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    rollout = omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)
    assert cfg.trainer.n_gpus_per_node == 8 and cfg.arlarena.backend == "ray"
    assert rollout.n == 8 and cfg.data.train_batch_size == 16 and rollout.agent.default_agent_loop == AGENT_NAME
    webshop = "webshop" in preset
    assert cfg.arlarena.env_id == (WEBSHOP if webshop else "arlarena/ALFWorld-v0")
    assert cfg.data.max_prompt_length == (4096 if webshop else 2048) and cfg.data.max_response_length == 512
    if preset.startswith("sampo"):
        assert actor.policy_loss.loss_mode == LOSS_NAME and algo.adv_estimator == ADV_NAME
        assert (actor.clip_ratio_low, actor.clip_ratio_high, actor.loss_agg_mode) == (3e-3, 4e-3, "seq-mean-token-mean")
        assert (actor.ppo_mini_batch_size, actor.ppo_micro_batch_size_per_gpu) == ((128, 8) if webshop else (256, 32))
        assert cfg.arlarena.gigpo.mode == ("mean_norm" if webshop else "mean_std_norm")
        assert cfg.arlarena.filter_groups.cold_start_steps == (5 if webshop else 15)
        assert cfg.trainer.total_training_steps == (250 if webshop else 200)
        assert cfg.trainer.test_freq == (10 if webshop else 5)
    elif preset.startswith("grpo"):
        assert algo.adv_estimator == "grpo" and actor.policy_loss.loss_mode == "vanilla"
        assert not cfg.arlarena.filter_groups.enable
    else:
        assert algo.adv_estimator == ADV_NAME and actor.policy_loss.loss_mode == "vanilla"
    with pytest.raises(Exception, match="nope"):
        recipe.compose(preset, ["actor_rollout_ref.actor.nope=1"])


def test_plugin_registers_in_every_process_that_imports_verl():
    """verl loads the `verl.plugins` entry point on `import verl` (driver, Ray workers): our
    loss, estimator and agent loop are registered without importing our package first."""
    import subprocess
    import sys

    code = ("import verl\nfrom verl.trainer.ppo import core_algos\n"
            "from verl.experimental.agent_loop.agent_loop import _agent_loop_registry\n"
            f"core_algos.get_policy_loss_fn({LOSS_NAME!r}); core_algos.get_adv_estimator_fn({ADV_NAME!r})\n"
            f"assert {AGENT_NAME!r} in _agent_loop_registry, sorted(_agent_loop_registry)\nprint('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_entry_point_writes_the_run_files(tmp_path):
    import pandas as pd
    from omegaconf import OmegaConf
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    from arlarena_baselines.verl.__main__ import main, prepare
    from arlarena_baselines.verl.trainer import ArlArenaRayPPOTrainer

    assert issubclass(ArlArenaRayPPOTrainer, RayPPOTrainer)
    assert main(["--config", "sampo_webshop", "--model", str(tmp_path / "model"), "--out", str(tmp_path), "--print-config",
                 "arlarena.train_tasks=32", "arlarena.val_tasks=4"]) == 0
    train = pd.read_parquet(tmp_path / "train.parquet")
    assert len(train) == 32 and set(train["agent_name"]) == {AGENT_NAME}
    assert [r["seed"] for r in train["extra_info"]] == list(range(32))
    loops = OmegaConf.load(tmp_path / "agent_loops.yaml")  # what verl's AgentLoopWorker reads
    assert loops[0].name == AGENT_NAME and loops[0].env_id == WEBSHOP and loops[0].env_kwargs.max_steps == 15
    cfg = prepare("sampo_webshop", "m", tmp_path, ["arlarena.train_tasks=8", "arlarena.val_tasks=2"])
    assert cfg.actor_rollout_ref.rollout.agent.agent_loop_config_path == str(tmp_path / "agent_loops.yaml")
    assert cfg.data.train_files == str(tmp_path / "train.parquet")
