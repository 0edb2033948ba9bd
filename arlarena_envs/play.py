"""`arlarena play <env-id>`: play an env in the terminal.

Type an action (bare, e.g. `up`, or a full `<think>..</think><action>..</action>` response).
Commands: `:help`, `:prompt` (show the model's prompt), `:oracle` (take the expert's action),
`:reset [seed]`, `:quit`. End of input (Ctrl-D) quits too."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from arlarena_envs.cli_basic import parse_env_kwargs
from arlarena_envs.registry import make


def add_play_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("env_id")
    p.add_argument("--seed", type=_seed, default=0, help="task seed (a non-negative int)")
    p.add_argument("--split", default=None, help="split to draw the task from (default: the spec's)")
    p.add_argument("--env-kwargs", default="{}", help="JSON object of extra make() kwargs")
    p.add_argument("--show-prompt", action="store_true", help="print the full prompt each turn")


def _seed(text: str) -> int:
    """argparse type of --seed (argparse prints the ArgumentTypeError as a one-line usage error)."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"must be a non-negative int, got {text!r}")
    return int(text)


def play(env_id: str, seed: int = 0, split: str | None = None, env_kwargs: dict | None = None,
         show_prompt: bool = False, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> float:
    """Run an interactive session; returns the total reward of the last episode."""
    kwargs = dict(env_kwargs or {})
    if split:
        kwargs["split"] = split
    env = make(env_id, **kwargs).unwrapped

    def show(text: str) -> None:
        print(text, file=out, flush=True)

    obs, info = env.reset_result(seed=seed)
    total, done = 0.0, False
    show(f"== {env_id} seed={seed} task #{env.task_index}: {obs.task}")
    show(env.prompt() if show_prompt else obs.text)
    if obs.admissible_actions is not None:
        show(f"actions: {', '.join(obs.admissible_actions)}")
    while True:
        out.write("> ")
        out.flush()
        line = stdin.readline()
        if not line:
            break
        line = line.rstrip("\n")
        if line in (":q", ":quit"):
            break
        if line == ":help":
            show(__doc__ or "")
            continue
        if line == ":prompt":
            show(env.prompt())
            continue
        if line.startswith(":reset"):
            parts = line.split()
            if len(parts) > 1 and not (parts[1].isascii() and parts[1].isdigit()):
                show(f"usage: :reset [seed], seed a non-negative int (got {parts[1]!r})")
                continue
            seed = int(parts[1]) if len(parts) > 1 else seed + 1
            obs, info = env.reset_result(seed=seed)
            total, done = 0.0, False
            show(f"== seed={seed} task #{env.task_index}: {obs.task}\n{obs.text}")
            continue
        if done:
            show("episode over: :reset [seed] or :quit")
            continue
        if line == ":oracle":
            line = env.oracle_action() or ""
            show(f"(oracle) {line}")
        r = env.step_result(line)
        total += r.reward
        done = r.done
        show(env.prompt() if show_prompt else r.observation.text)
        show(f"reward {r.reward:+.2f}  total {total:+.2f}  status {r.info.parse_status.value}  won {r.info.won}"
             + (f"  extra {json.dumps(r.info.extra)}" if r.info.extra else ""))
        if r.observation.admissible_actions is not None and not done:
            show(f"actions: {', '.join(r.observation.admissible_actions)}")
        if done:
            show("== episode " + ("solved" if r.info.won else "over") + (" (truncated)" if r.truncated else ""))
    env.close()
    return total


def main_play(args: argparse.Namespace) -> int:
    play(args.env_id, args.seed, args.split, parse_env_kwargs(args.env_kwargs), args.show_prompt)
    return 0
