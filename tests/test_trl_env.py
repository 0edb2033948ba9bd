"""The TRL bridge with the REAL TRL: GRPOTrainer on CPU, a tiny Qwen2 model built from a config,
2 steps on Sokoban through `environment_factory`. The tiny model is first taught (a few SFT
steps) to emit Qwen tool calls, so the rollouts really call the env's tool and the rewards
come from real Sokoban moves."""

from __future__ import annotations

import json
import pickle
import random

import pytest

trl = pytest.importorskip("trl", reason="needs TRL: pip install 'arlarena-envs[trl]'")
torch = pytest.importorskip("torch")
pytest.importorskip("datasets")

import arlarena_envs  # noqa: E402,F401
from arlarena_envs.registry import create_env  # noqa: E402

from arlarena_baselines.tiny import build_tiny_model, train_tokenizer  # noqa: E402
from arlarena_baselines.trl_env import ArlArenaTRLEnv, environment_factory, task_dataset  # noqa: E402

SOKOBAN = "arlarena/Sokoban-v0"
MOVES = ["up", "down", "left", "right"]


def _tool_call(action: str) -> str:
    return '<tool_call>\n' + json.dumps({"name": "take_action", "arguments": {"action": action}}) + '\n</tool_call>'


def test_env_class_contract_and_group_seeding():
    factory = environment_factory(SOKOBAN)
    pickle.loads(pickle.dumps(factory))  # TRL's async worker pickles the factory
    a, b = factory(), factory()
    assert isinstance(a, ArlArenaTRLEnv)
    pa, pb = a.reset(seed=4, prompt="ignored"), b.reset(seed=4)
    assert pa == pb and a.record.turns == [] and a.env.observation.state_hash == b.env.observation.state_hash
    ref = create_env(env_id=SOKOBAN, action_format="auto").unwrapped
    ref.reset_result(seed=4)
    total = 0.0
    for k in range(60):
        move = ref.oracle_action()
        r = ref.step_result(move)
        total += r.reward
        text = a.take_action(move)
        assert text.startswith(r.observation.text)
        assert a.record.turns[-1].state_hash != "" and a.env.observation.state_hash == r.observation.state_hash
        if r.done:
            break
    assert r.info.won and a.record.won and a.get_reward() == pytest.approx(total)
    with pytest.raises(ValueError, match="over"):
        a.take_action("up")
    public = sorted(n for n in dir(ArlArenaTRLEnv) if not n.startswith("_") and callable(getattr(ArlArenaTRLEnv, n)))
    assert public == ["get_reward", "reset", "take_action"]  # what TRL turns into tools (+ reset/get_reward)


@pytest.mark.slow
def test_grpo_trainer_two_steps_on_sokoban(tmp_path):
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    from trl.chat_template_utils import qwen2_5_chat_template

    torch.manual_seed(0)
    random.seed(0)
    # tokenizer: trained on the env's prompts and on tool calls, with TRL's Qwen2.5 chat template
    probe = ArlArenaTRLEnv(SOKOBAN)
    corpus = [probe.reset(seed=s) for s in range(8)] + [_tool_call(m) for m in MOVES] * 8
    tok = train_tokenizer(corpus + [qwen2_5_chat_template], vocab_size=600)
    tok.chat_template = qwen2_5_chat_template
    model = build_tiny_model(len(tok), hidden_size=64, num_layers=2, num_heads=4, max_position_embeddings=4096,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id

    # warm start: teach the model to answer the prompts TRL builds (chat template + tool schema)
    # with a tool call (any of the four moves)
    prompts = []
    for seed in range(4):
        msgs = [{"role": "user", "content": task_dataset(SOKOBAN, 1)[0]["prompt"][0]["content"] + probe.reset(seed=seed)}]
        ids = tok.apply_chat_template(msgs, tools=[probe.take_action], add_generation_prompt=True, tokenize=True,
                                      return_dict=True)["input_ids"]
        prompts.append(list(ids))
    seqs = [(p, tok(_tool_call(m) + "<|im_end|>", add_special_tokens=False)["input_ids"]) for p in prompts for m in MOVES]
    width = max(len(p) + len(t) for p, t in seqs)
    batch = torch.tensor([p + t + [tok.pad_token_id] * (width - len(p) - len(t)) for p, t in seqs])
    labels = torch.full_like(batch, -100)
    for i, (p, t) in enumerate(seqs):
        labels[i, len(p) : len(p) + len(t)] = torch.tensor(t)
    attn = (torch.arange(width)[None, :] < torch.tensor([len(p) + len(t) for p, t in seqs])[:, None]).long()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss = model(input_ids=batch, attention_mask=attn, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8, loss.item()

    made: list[ArlArenaTRLEnv] = []
    base = environment_factory(SOKOBAN)

    def factory():
        env = base()
        made.append(env)
        return env

    class Records(TrainerCallback):
        def __init__(self):
            self.logs: list[dict] = []

        def on_log(self, args, state, control, logs=None, **kw):
            self.logs.append(dict(logs or {}))

    cb = Records()
    args = GRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, max_steps=2, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=256, max_tool_calling_iterations=2, learning_rate=1e-4, logging_steps=1,
        report_to=[], save_strategy="no", temperature=1.0, beta=0.0, seed=0, dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(model=model, processing_class=tok, args=args, train_dataset=task_dataset(SOKOBAN, 16),
                          environment_factory=factory, callbacks=[cb])
    before = [p.detach().clone() for p in model.parameters()]
    trainer.train()
    assert trainer.state.global_step == 2, cb.logs
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters()))
    played = [e for e in made if e.record is not None]
    assert played, "no env was reset"
    # the rollouts really played Sokoban through the tool
    assert sum(len(e.record.turns) for e in played) > 0, cb.logs
    # group members share the task: rollouts reset with one seed start in one state
    by_seed: dict[int, set[str]] = {}
    for e in played:
        first = e.record.turns[0].state_hash if e.record.turns else e.env.observation.state_hash
        if not e.record.turns:
            continue
        by_seed.setdefault(e.record.seed, set()).add(first)
    assert by_seed and all(len(h) == 1 for h in by_seed.values())
    reward_keys = [k for log in cb.logs for k in log if "ArlArenaTRLEnv" in k]
    assert reward_keys, f"TRL logged no env reward column: {cb.logs}"
