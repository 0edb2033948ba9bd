"""Test helpers (not tests): a trainer run directory laid out as arlarena_baselines.train
writes it, and a results folder holding a trained row next to random and oracle rows."""

from __future__ import annotations

import json
from pathlib import Path

from arlarena_envs.leaderboard import LeaderboardRow, evaluate, select_checkpoint
from arlarena_envs.leaderboard.trained import export_run, training_provenance

SOKO = "arlarena/Sokoban-v0"


def fake_run(root: Path, *, steps=(0, 2, 4), evals=None, launch: dict | None = None, model: Path | None = None) -> Path:
    """A run directory laid out as arlarena_baselines.train writes it (config.json from the real
    preset, metrics.jsonl, result.json, checkpoints/step_N/), with a chosen eval history."""
    from arlarena_baselines.config import load_config

    run = root / "sampo-Sokoban-v0-s3"
    cfg = load_config("demo_cpu", ["trainer.seed=3", "trainer.total_steps=4"])
    run.mkdir(parents=True)
    (run / "config.json").write_text(cfg.model_dump_json(indent=2))
    evals = evals if evals is not None else {0: 0.1, 2: 0.3, 3: 0.9, 4: 0.2}
    lines = [{"step": 10, "phase": "bc", "loss": 1.0}]
    for s in range(1, 5):
        row = {"step": s, "phase": "rl", "success": 0.1 * s, "grad_norm": 0.5, "entropy": 0.3, "valid_format_ratio": 1.0}
        if s in evals:
            row["eval_success"] = evals[s]
        lines.append(row)
    lines.insert(1, {"step": 0, "phase": "eval", "eval_success": evals.get(0, 0.0)})
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (run / "result.json").write_text(json.dumps({"steps_done": 4, "final_eval_success": 0.2}))
    if launch is not None:
        (run / "provenance.json").write_text(json.dumps(launch))
    for s in steps:
        d = run / "checkpoints" / f"step_{s:06d}"
        d.mkdir(parents=True)
        if model is not None:
            for f in model.iterdir():
                (d / f.name).write_bytes(f.read_bytes())
        else:
            (d / "model.safetensors").write_bytes(b"weights of step %d" % s)
        (d / "trainer_state.json").write_text(json.dumps({"step": s}))
        (d / "optimizer.pt").write_bytes(b"x" * 64)
    (run / "checkpoints" / "step_000006.tmp").mkdir(parents=True)  # a half-written checkpoint is never picked
    return run


def trained_results(root: Path) -> tuple[Path, LeaderboardRow]:
    """results/ with random and oracle Sokoban rows and a trained row (a fake run's artefacts
    and provenance; the episodes are the random policy's, played under the full protocol)."""
    results = root / "results"
    run = fake_run(root / "runs", launch={"code_commit": "0123abcd", "command": "arlarena train ..."})
    step, ckpt = select_checkpoint(run, "last")
    dest = results / "runs" / run.name
    files, copied = export_run(run, dest, ckpt)
    arts = {k: f"runs/{run.name}/{v}" for k, v in files.items()}
    t = training_provenance(run, "last", step, ckpt, artefacts=arts, weights_in_repo=copied)
    lb = root / "lb"
    rows = [
        evaluate(SOKO, "oracle", out_dir=lb),
        evaluate(SOKO, "random", out_dir=lb),
        evaluate(SOKO, "random", out_dir=lb / "t", training=t, stability_run=dest),
    ]
    rows[2] = rows[2].model_copy(update={"policy": "hf:results/runs/trained/policy", "policy_kind": "hf"})
    for name, r in zip(["oracle", "random", "trained"], rows):
        (results / "Sokoban-v0").mkdir(parents=True, exist_ok=True)
        (results / "Sokoban-v0" / f"{name}.json").write_text(r.model_dump_json(indent=2))
    return results, rows[2]
