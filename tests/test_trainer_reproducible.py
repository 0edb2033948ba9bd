"""Same config, same seed -> the same metrics log, in fresh processes.

A shortened demo (demo_cpu with a smaller model and fewer steps: tokenizer training, BC,
SAMPO rollouts with sampling, filtering, shuffled mini-batches, evaluation) runs twice, each
in its own interpreter with a different PYTHONHASHSEED, and the two metrics.jsonl must be equal
line by line except for the wall-clock field `time_s`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[1]
SHORT_DEMO = [
    "model.tiny={hidden_size: 32, num_layers: 1, num_heads: 2, vocab_size: 512, tokenizer_episodes: 4}",
    "env.max_steps=4",
    "rollout.num_groups=2",
    "rollout.group_size=3",
    "bc.episodes=12",
    "bc.epochs=2",
    "bc.batch_size=16",
    "trainer.total_steps=3",
    "trainer.eval_episodes=6",
    "trainer.eval_every=2",
    "trainer.save_every=0",
    "trainer.ppo_mini_batch_size=8",
    "trainer.ppo_micro_batch_size=4",
    "trainer.progress=false",
    "algorithm.filter_groups.cold_start_steps=1",
]

SCRIPT = """
import json, sys
from arlarena_baselines.train import run
res = run("demo_cpu", overrides=json.loads(sys.argv[2]), run_dir=sys.argv[1])
print(res.final_eval_success)
"""


def _run(run_dir: Path, hash_seed: str) -> list[dict]:
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = hash_seed
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "baselines"), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(run_dir), json.dumps(SHORT_DEMO)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for d in lines:
        d.pop("time_s", None)
    return lines


def test_short_demo_reproduces_in_fresh_processes(tmp_path):
    a = _run(tmp_path / "a", "1")
    b = _run(tmp_path / "b", "2")
    assert [d["phase"] for d in a].count("rl") == 3
    assert any(d["phase"] == "eval" for d in a)
    assert len(a) == len(b)
    for la, lb in zip(a, b):
        assert la == lb
