"""Dynamic filtering of zero-variance groups (DAPO-style), ARL-Arena semantics.

The trainer calls `select_groups` once per generation try. It works in whole groups: a group
is the G trajectories that share a task seed, described by their episode rewards (the env
reward sums BEFORE the invalid-action penalty, as the reference: all-fail groups are dropped
even if their penalties differ).
"""

from __future__ import annotations

from typing import Sequence


def is_uniform(episode_rewards: Sequence[float]) -> bool:
    """A group has zero variance iff every episode reward equals the first (exact equality)."""
    return all(r == episode_rewards[0] for r in episode_rewards)


def filter_active(step: int, enable: bool, cold_start_steps: int, is_train: bool = True) -> bool:
    """Filtering runs only when enabled, in training, and once step > cold_start_steps
    (the RL step counter starts at 1). Unlike the reference WebShop trainer, the caller always
    passes the real step, so the filter actually fires."""
    return bool(enable and is_train and step > cold_start_steps)


def select_groups(group_rewards: Sequence[Sequence[float]], needed_groups: int, last_try: bool,
                  fill_uniform: bool = True, have_groups: int = 0) -> list[int]:
    """Indices of the groups of one generation try to keep, in order (ARL-Arena fixed DAPO).

    Regular try: keep the non-uniform groups, truncated to `needed_groups` whole groups.
    Last try: the non-uniform groups first, then fill the shortfall with uniform groups in
    their batch order, up to `needed_groups` groups in all. With `fill_uniform=False` the last
    try keeps only non-uniform groups (the batch may come out smaller than asked), unless
    nothing at all was kept (`have_groups` = groups kept by earlier tries is 0 and this try has
    no non-uniform group): then it fills as above, so a step always has rows.
    `needed_groups` <= 0 keeps nothing."""
    if needed_groups <= 0:
        return []
    informative = [i for i, g in enumerate(group_rewards) if not is_uniform(g)]
    keep = informative[:needed_groups]
    if not fill_uniform and (keep or have_groups):
        return keep
    if last_try and len(keep) < needed_groups:
        uniform = [i for i, g in enumerate(group_rewards) if is_uniform(g)]
        keep = keep + uniform[: needed_groups - len(keep)]
    return keep
