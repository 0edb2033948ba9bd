"""The leaderboard row of a trained checkpoint, end to end: pick the checkpoint of a trainer
run by a rule, copy the run's small artefacts next to the results, evaluate the checkpoint
under an env's protocol, and write the row with its training provenance and stability score.

    row, path = evaluate_trained("runs/sampo-Sokoban-v0-s0", "arlarena/Sokoban-v0", rule="last", samples_per_task=2)

(`arlarena leaderboard evaluate --training-run RUN_DIR` and
`python benchmarks/make_leaderboard_rows.py --trained RUN_DIR` call it; trained.py reads the run.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from arlarena_envs.errors import ConfigError
from arlarena_envs.leaderboard.trained import (
    MAX_COMMITTED_WEIGHTS_BYTES,
    config_digest,
    export_run,
    run_config,
    select_checkpoint,
    training_provenance,
)


def evaluate_trained(
    run_dir: str | Path,
    env_id: str,
    *,
    rule: str = "last",
    results_dir: str | Path = "results",
    out_dir: str | Path = "runs/leaderboard",
    samples_per_task: int = 1,
    policy: str | None = None,
    resume: bool = True,
    progress: Any = None,
    max_weight_bytes: int = MAX_COMMITTED_WEIGHTS_BYTES,
    episodes: int | None = None,
    max_steps: int | None = None,
    sampling: Any = None,
    run_name: str | None = None,
    batch_size: int = 1,
) -> tuple[Any, Path | None]:
    """The leaderboard row of a trainer run's checkpoint: pick it by `rule`, copy the run's small
    artefacts to `<results_dir>/runs/<run name>/` (with the weights when they fit in
    `max_weight_bytes`), evaluate it under `env_id`'s protocol (`samples_per_task` samples per
    task), put the run's stability score and `provenance.training` in the row, and write the row
    to `<results_dir>/<Env>-vN/<policy slug>.json`. The evaluated policy is the committed copy
    when the weights were copied (the same file, sha256 recorded), else the checkpoint folder.
    `policy` (`hf:PATH`, optional) must name the checkpoint the rule picks. `run_name` (default:
    the run folder's name) names the artefact folder; a folder already holding another run's
    config is refused rather than overwritten (runs/bench_trainer/s0/sampo and .../s1/sampo
    both end in `sampo`: name them). Returns (row, the
    row file or None when the evaluation had overrides: `episodes` / `max_steps` / `sampling`, for smoke tests)."""
    from arlarena_envs.leaderboard.evaluate import evaluate, policy_slug
    from arlarena_envs.registry import get_spec

    run_dir, results_dir = Path(run_dir), Path(_rel(Path(results_dir)))
    step, ckpt = select_checkpoint(run_dir, rule)
    if policy is not None:
        if not policy.startswith("hf:") or Path(policy[3:]).resolve() != ckpt.resolve():
            raise ConfigError(f"--policy {policy} is not the checkpoint that rule {rule!r} picks in {run_dir} ({ckpt}); "
                              f"pass --policy hf:{ckpt} or leave --policy out")
    name = run_name or run_dir.resolve().name
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", name):
        raise ConfigError(f"run name {name!r}: use letters, digits, '.', '_' and '-' (it names a folder and a policy)")
    dest = results_dir / "runs" / name
    if (dest / "config.json").exists():
        theirs = config_digest(json.loads((dest / "config.json").read_text(encoding="utf-8")))
        if theirs != config_digest(run_config(run_dir)):
            raise ConfigError(f"{dest} holds the artefacts of another run (config digest {theirs}); give this run "
                              f"another name (run_name / --run-name / --trained {run_dir}=NAME)")
    files, copied = export_run(run_dir, dest, ckpt, max_weight_bytes)
    artefacts = {k: f"runs/{name}/{v}" for k, v in files.items()}
    training = training_provenance(run_dir, rule, step, ckpt, artefacts=artefacts, weights_in_repo=copied,
                                   config_ref=_rel(dest / "config.json"), run_name=name)
    model = dest / "policy" if copied else ckpt
    spec_str = f"hf:{_rel(model)}"
    row = evaluate(env_id, spec_str, out_dir=out_dir, resume=resume, samples_per_task=samples_per_task,
                   training=training, stability_run=dest, progress=progress, episodes=episodes, max_steps=max_steps,
                   sampling=sampling, batch_size=batch_size)
    if row.provenance.overrides:
        return row, None
    target = results_dir / get_spec(env_id).name / f"{policy_slug(row.policy)}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(row.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return row, target


def _rel(p: Path) -> str:
    """`p` relative to the working directory when it lies below it (rows must not name this
    machine's absolute paths), else as given."""
    try:
        return Path(p).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(p).as_posix()
