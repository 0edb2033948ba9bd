"""Optimal Sokoban solver: A* over (player, boxes) with an admissible heuristic.

Cost = number of actions (moves and pushes alike), as the env counts steps. The heuristic,
the sum over boxes of the Manhattan distance to the nearest target, never overestimates: each
action moves at most one box by one cell. So the first plan popped is optimal.
"""

from __future__ import annotations

import heapq
import itertools

from arlarena_envs.sokoban.rules import ACTIONS, Level, State, is_solved, move


def heuristic(level: Level, state: State) -> int:
    return sum(min(abs(b[0] - t[0]) + abs(b[1] - t[1]) for t in level.targets) for b in state.boxes)


def solve(level: Level, start: State, max_expansions: int = 200_000) -> list[str] | None:
    """The shortest action list that puts every box on a target, or None if unsolvable
    (or not solved within `max_expansions` expanded states)."""
    if is_solved(level, start):
        return []
    tie = itertools.count()
    frontier = [(heuristic(level, start), next(tie), 0, start)]
    parent: dict[State, tuple[State, str] | None] = {start: None}
    best = {start: 0}
    expansions = 0
    while frontier:
        _, _, g, s = heapq.heappop(frontier)
        if g > best[s]:
            continue
        if is_solved(level, s):
            plan = []
            while parent[s] is not None:
                s, a = parent[s]  # type: ignore[misc]
                plan.append(a)
            return plan[::-1]
        expansions += 1
        if expansions > max_expansions:
            return None
        for a in ACTIONS:
            t, _ = move(level, s, a)
            if t == s:
                continue
            if g + 1 < best.get(t, 1 << 30):
                best[t] = g + 1
                parent[t] = (s, a)
                heapq.heappush(frontier, (g + 1 + heuristic(level, t), next(tie), g + 1, t))
    return None
