"""`python -m arlarena_baselines.verl --config PRESET --model DIR [--out DIR] [key=value ...]`

Trains SAMPO (or the preset's algorithm) with verl on any registered env, without editing
verl: composes verl's config with the preset (recipe.compose), writes the task parquet files
(turns.task_rows) and the agent-loop config (env id, pool backend, env kwargs) under --out,
then starts verl's Ray job with `trainer.ArlArenaRayPPOTrainer`. `--print-config` stops after
writing the files and prints the resolved config (no GPU, no Ray needed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def prepare(preset: str, model: str, out: Path, overrides: list[str]):
    """Compose the config and write the parquet and agent-loop files it points to."""
    import pandas as pd
    import yaml
    from omegaconf import OmegaConf

    from arlarena_baselines.verl import recipe
    from arlarena_baselines.verl.agent_loop import AGENT_NAME
    from arlarena_baselines.verl.turns import task_rows

    cfg = recipe.compose(preset, overrides)
    a = cfg.arlarena
    out.mkdir(parents=True, exist_ok=True)
    train = out / "train.parquet"
    val = out / "val.parquet"
    pd.DataFrame(task_rows(a.env_id, range(int(a.train_tasks)), a.get("train_split"))).to_parquet(train)
    pd.DataFrame(task_rows(a.env_id, range(int(a.val_tasks)), a.get("val_split"))).to_parquet(val)
    loops = out / "agent_loops.yaml"
    loops.write_text(yaml.safe_dump([{
        "name": AGENT_NAME, "_target_": "arlarena_baselines.verl.agent_loop.ArlArenaAgentLoop",
        "env_id": a.env_id, "backend": a.get("backend", "inprocess"),
        "env_kwargs": OmegaConf.to_container(OmegaConf.create(a.get("env_kwargs", {}))),
        "backend_kwargs": OmegaConf.to_container(OmegaConf.create(a.get("backend_kwargs", {}))),
    }]))
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([
        f"data.train_files={train}", f"data.val_files={val}", f"actor_rollout_ref.model.path={model}",
        f"actor_rollout_ref.rollout.agent.agent_loop_config_path={loops}", f"trainer.default_local_dir={out / 'checkpoints'}",
    ]))
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m arlarena_baselines.verl", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="a preset (sampo_webshop, sampo_alfworld, grpo_*, gigpo_*) or a YAML path")
    ap.add_argument("--model", required=True, help="local HF model directory (the paper starts from an SFT checkpoint)")
    ap.add_argument("--out", default="runs/verl", help="where the parquet, agent-loop config and checkpoints go")
    ap.add_argument("--print-config", action="store_true", help="write the files, print the resolved config, stop")
    ap.add_argument("overrides", nargs="*", help="verl keys (trainer.n_gpus_per_node=8) or arlarena.* keys")
    args = ap.parse_args(argv)
    cfg = prepare(args.config, args.model, Path(args.out).resolve(), args.overrides)
    if args.print_config:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(cfg))
        return 0
    from verl.trainer.main_ppo import run_ppo

    from arlarena_baselines.verl.trainer import task_runner_class

    run_ppo(cfg, task_runner_class=task_runner_class())
    return 0


if __name__ == "__main__":
    sys.exit(main())
