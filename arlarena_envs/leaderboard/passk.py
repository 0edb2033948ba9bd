"""pass@k of a sampling policy: the chance that at least one of k samples solves a task.

With n >= k samples of a task of which c succeeded, the unbiased estimator (Chen et al. 2021,
"Evaluating Large Language Models Trained on Code") is

    pass@k = 1 - C(n - c, k) / C(n, k)        (= 1 when n - c < k)

and the row's figure is its mean over the tasks. The naive 1 - (1 - c/n)^k is biased low;
drawing k of the n samples without replacement is what the binomials count.
"""

from __future__ import annotations

from math import comb
from typing import Sequence

from arlarena_envs.errors import ConfigError


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k) for one task: n samples, c successes, k <= n."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ConfigError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def default_ks(n: int) -> list[int]:
    """The k reported for n samples per task: 1, 2, 4, ... up to n, and n itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def pass_at_k_table(successes: Sequence[Sequence[bool]], ks: Sequence[int] | None = None) -> dict[int, float]:
    """k -> mean over tasks of pass_at_k(n, c_task, k); `successes[t]` = the n outcomes of task t
    (every task must have the same n)."""
    if not successes:
        return {}
    ns = {len(s) for s in successes}
    if len(ns) != 1:
        raise ConfigError(f"pass@k needs the same number of samples for every task, got {sorted(ns)}")
    n = ns.pop()
    return {
        k: sum(pass_at_k(n, sum(map(bool, s)), k) for s in successes) / len(successes)
        for k in (ks if ks is not None else default_ks(n))
    }


def successes_by_task(won_by_index: dict[int, bool], tasks: int, samples: int) -> list[list[bool]]:
    """Group episode outcomes by task: episode k plays task k mod `tasks` (sample k div `tasks`)."""
    missing = [k for k in range(tasks * samples) if k not in won_by_index]
    if missing:
        raise ConfigError(f"pass@k needs episodes 0..{tasks * samples - 1}; missing {missing[:5]}")
    return [[won_by_index[j * tasks + t] for j in range(samples)] for t in range(tasks)]
