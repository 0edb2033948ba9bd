"""Rows for trained policies: read a trainer run directory (`arlarena train`), choose its
checkpoint by a named rule, copy the small artefacts next to the results, and describe the
run in the row's `provenance.training`.

A run directory (arlarena_baselines.train) holds `config.json` (the resolved config),
`metrics.jsonl` (one MetricRecord per line: bc, rl and eval phases), `result.json` (steps done,
final eval), `checkpoints/step_NNNNNN/` (HF model + tokenizer + optimizer state), and, when its
launcher wrote one, `provenance.json` ({"code_commit": ..., "command": ...}).

Checkpoint rules:
* `last`: the newest complete checkpoint (the trainer always writes one at its final step);
* `best-eval`: among the checkpoints still on disk, the one whose step has the highest
  in-training eval success (`eval_success` of the rl / eval rows; ties: the earliest step). The
  trainer evaluates on its own eval split, so the choice is made on held-out levels of the
  *training* env config, which may share level seeds with the leaderboard split: a selection
  effect the rule name records;
* `step:N`: checkpoint N.

config_digest = sha256 over the canonical JSON (sorted keys, no spaces) of config.json, first 16
hex: two runs share it exactly when their resolved configs are equal.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from arlarena_envs.errors import ConfigError, DataError
from arlarena_envs.leaderboard.models import TrainingProvenance

#: model weights above this size are not copied into results/ (the row says how to regenerate them)
MAX_COMMITTED_WEIGHTS_BYTES = 2 * 1024 * 1024
# files of a checkpoint folder that make a loadable policy (the optimizer state is left behind)
_POLICY_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "trainer_state.json")


def config_digest(config: dict[str, Any]) -> str:
    """sha256 (16 hex) of the canonical JSON of a resolved config."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def git_commit(where: str | Path | None = None) -> str | None:
    """HEAD of the git checkout holding `where` (default: this package), '+dirty' when tracked
    files differ from it; None outside a git checkout or without git."""
    where = Path(where) if where is not None else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing; {what}") from None
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: cannot read it ({e}); {what}") from None


def run_config(run_dir: Path) -> dict[str, Any]:
    return _read_json(run_dir / "config.json", "point at a trainer run directory (`arlarena train --run-dir ...`)")


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint (it has trainer_state.json), oldest first."""
    d = run_dir / "checkpoints"
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        if p.name.startswith("step_") and p.name[5:].isdigit() and (p / "trainer_state.json").exists():
            out.append((int(p.name[5:]), p))
    return sorted(out)


def eval_by_step(run_dir: Path) -> dict[int, float]:
    """step -> the trainer's eval success logged at that step (rl rows and eval rows; the last wins)."""
    out: dict[int, float] = {}
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if d.get("phase") in ("rl", "eval") and d.get("eval_success") is not None:
            out[int(d["step"])] = float(d["eval_success"])
    return out


def select_checkpoint(run_dir: str | Path, rule: str = "last") -> tuple[int, Path]:
    """(step, folder) of the checkpoint `rule` picks (rules in the module docstring)."""
    run_dir = Path(run_dir)
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        raise DataError(f"{run_dir}: no complete checkpoints under checkpoints/; train first (`arlarena train --run-dir {run_dir}`)")
    if rule == "last":
        return ckpts[-1]
    if rule.startswith("step:"):
        want = rule[5:]
        for s, p in ckpts:
            if want.isdigit() and s == int(want):
                return s, p
        raise ConfigError(f"{run_dir}: no checkpoint at step {want}; kept steps are {[s for s, _ in ckpts]}")
    if rule == "best-eval":
        evals = eval_by_step(run_dir)
        cands = [(s, p) for s, p in ckpts if s in evals]
        if not cands:
            raise ConfigError(
                f"{run_dir}: no kept checkpoint has an in-training eval (steps {[s for s, _ in ckpts]}, evals at "
                f"{sorted(evals)}); train with trainer.eval_every = trainer.save_every, or use --checkpoint-rule last"
            )
        best = max(evals[s] for s, _ in cands)
        return next((s, p) for s, p in cands if evals[s] == best)
    raise ConfigError(f"unknown checkpoint rule {rule!r}; use last, best-eval or step:N")


def steps_trained(run_dir: Path) -> int:
    """result.json's steps_done, else the last rl step in metrics.jsonl, else 0."""
    res = run_dir / "result.json"
    if res.exists():
        return int(_read_json(res, "").get("steps_done", 0))
    steps = [0]
    path = run_dir / "metrics.jsonl"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if d.get("phase") == "rl":
                steps.append(int(d["step"]))
    return max(steps)


def export_run(run_dir: str | Path, dest: str | Path, checkpoint: Path,
               max_weight_bytes: int = MAX_COMMITTED_WEIGHTS_BYTES) -> tuple[dict[str, str], bool]:
    """Copy the run's small files to `dest` (config.json, metrics.jsonl, result.json,
    provenance.json, monitor.jsonl when present), write its `arlarena stability` report to
    dest/stability/, and copy the chosen checkpoint's policy files to dest/policy/ when its
    weights are at most `max_weight_bytes`. Returns (name -> file name relative to dest,
    weights copied)."""
    from arlarena_envs.stability import analyze_runs, write_report

    run_dir, dest = Path(run_dir), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for key, name in (("config", "config.json"), ("metrics", "metrics.jsonl"), ("result", "result.json"),
                      ("launch", "provenance.json"), ("monitor", "monitor.jsonl")):
        if (run_dir / name).exists():
            shutil.copyfile(run_dir / name, dest / name)
            files[key] = name
    if "config" not in files or "metrics" not in files:
        raise DataError(f"{run_dir}: a trained row needs the run's config.json and metrics.jsonl")
    report = write_report(analyze_runs([dest]), dest / "stability", plots=True)
    files["stability"] = f"stability/{report.name}"
    weights = checkpoint / "model.safetensors"
    copied = weights.exists() and weights.stat().st_size <= max_weight_bytes
    pol = dest / "policy"
    if pol.exists():
        shutil.rmtree(pol)
    if copied:
        pol.mkdir()
        for name in _POLICY_FILES:
            if (checkpoint / name).exists():
                shutil.copyfile(checkpoint / name, pol / name)
        files["policy"] = "policy"
    return files, copied


def training_provenance(run_dir: str | Path, rule: str, step: int, checkpoint: Path, *, artefacts: dict[str, str],
                        weights_in_repo: bool, config_ref: str | None = None, run_name: str | None = None) -> TrainingProvenance:
    """The `provenance.training` block of a row for checkpoint `checkpoint` (step `step`) of
    `run_dir`, picked by `rule`; artefacts are paths relative to the results folder.
    regenerate: the launcher's recorded command, else `arlarena train --config <config_ref>`
    (the resolved config.json is valid YAML, so it re-trains the same config)."""
    run_dir = Path(run_dir)
    name = run_name or run_dir.resolve().name
    cfg = run_config(run_dir)
    launch = _read_json(run_dir / "provenance.json", "") if (run_dir / "provenance.json").exists() else {}
    commit, source = launch.get("code_commit"), "training run"
    if not commit:
        commit, source = git_commit(), "evaluation"
    trainer = cfg.get("trainer", {})
    weights = checkpoint / "model.safetensors"
    regenerate = launch.get("command") or (
        f"arlarena train --config {config_ref or run_dir / 'config.json'} --run-dir runs/{name}")
    regenerate += f"  # the evaluated weights: <run dir>/checkpoints/step_{step:06d}"
    return TrainingProvenance(
        run_name=name,
        algorithm=str(cfg.get("algorithm", {}).get("name", "custom")),
        trained_env_id=str(cfg.get("env", {}).get("env_id", "")),
        config_digest=config_digest(cfg),
        seed=int(trainer.get("seed", 0)),
        steps_trained=steps_trained(run_dir),
        total_steps=int(trainer.get("total_steps", 0)),
        checkpoint_rule=rule,
        checkpoint_step=step,
        checkpoint_eval_success=eval_by_step(run_dir).get(step),
        code_commit=commit,
        code_commit_source=source,
        weights_sha256=file_sha256(weights) if weights.exists() else None,
        weights_in_repo=weights_in_repo,
        regenerate=regenerate,
        artefacts=artefacts,
    )

