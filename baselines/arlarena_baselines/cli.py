"""`arlarena train`: train the SAMPO baseline (or a variant) from a YAML config.

    arlarena train --config demo_cpu                 # a shipped preset (see --list)
    arlarena train --config my.yaml --set trainer.total_steps=50 --set model.path=/models/qwen
    arlarena train --config sampo --print-config     # the resolved, validated config as JSON
"""

from __future__ import annotations

import argparse
import json


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", default="demo_cpu", help="YAML path or preset name (default: demo_cpu)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set trainer.total_steps=20 (repeatable; VALUE is YAML)")
    parser.add_argument("--run-dir", default=None, help="where to write the run (default: trainer.output_dir/run_name)")
    parser.add_argument("--list", action="store_true", help="list the shipped presets and exit")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    parser.add_argument("--no-progress", action="store_true", help="disable the tqdm progress bars")


def main_train(args: argparse.Namespace) -> int:
    from arlarena_baselines.config import load_config, preset_names

    if args.list:
        for name in preset_names():
            print(name)
        return 0
    overrides = list(args.overrides)
    if args.no_progress:
        overrides.append("trainer.progress=false")
    cfg = load_config(args.config, overrides)
    if args.print_config:
        print(cfg.model_dump_json(indent=2))
        return 0
    from arlarena_baselines.train import run

    res = run(cfg, run_dir=args.run_dir)
    print(json.dumps({
        "run_dir": str(res.run_dir), "metrics": str(res.metrics_path), "bc_eval_success": res.bc_eval_success,
        "final_eval_success": res.final_eval_success, "final_eval_score": res.final_eval_score,
        "steps_done": res.steps_done, "wall_time_s": round(res.wall_time_s, 1), "stopped_reason": res.stopped_reason,
    }, indent=2))
    return 0


add_arguments = add_train_arguments
main = main_train
