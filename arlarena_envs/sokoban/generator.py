"""Procedural Sokoban levels, always solvable, fully determined by (seed, size, boxes, depth).

1. Topology (as gym-sokoban): a random walk carves floor out of a walled room.
2. Targets are drawn on the floor and the boxes put on them (a solved position).
3. Reverse play: breadth-first search from every solved position using *pull* moves (the
   exact inverse of pushes). Every state it reaches is solvable, and its BFS depth is the
   length of the optimal solution.
4. The start is a reached state with no box on a target, as deep as possible but at most
   `search_depth` actions from the goal (ties broken by the seeded RNG).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from arlarena_envs.errors import ArlArenaError, InvalidArgumentError
from arlarena_envs.sokoban.rules import DIRECTIONS, Level, Pos, State, add

_CARVE_MASKS = (
    ((0, 0), (1, 0), (0, 1)),  # small L-shapes and plus shapes, as gym-sokoban's masks
    ((0, 0), (0, 1), (0, -1)),
    ((0, 0), (1, 0), (-1, 0)),
    ((0, 0),),
    ((0, 0), (1, 0), (0, 1), (1, 1)),
)


class GenerationError(ArlArenaError, RuntimeError):
    """No solvable level found for these settings (room too small for the boxes?)."""


def _topology(rng: np.random.Generator, h: int, w: int, steps: int) -> set[Pos]:
    floor: set[Pos] = set()
    pos = (int(rng.integers(1, h - 1)), int(rng.integers(1, w - 1)))
    dirs = list(DIRECTIONS.values())
    d = dirs[int(rng.integers(4))]
    for _ in range(steps):
        if rng.random() < 0.35:
            d = dirs[int(rng.integers(4))]
        nxt = add(pos, d)
        if 1 <= nxt[0] < h - 1 and 1 <= nxt[1] < w - 1:
            pos = nxt
        for off in _CARVE_MASKS[int(rng.integers(len(_CARVE_MASKS)))]:
            c = add(pos, off)
            if 1 <= c[0] < h - 1 and 1 <= c[1] < w - 1:
                floor.add(c)
    return floor


def reverse_depths(level: Level, solved_boxes: frozenset[Pos], max_depth: int) -> dict[State, int]:
    """BFS over pull moves from every solved position; depth = optimal forward solution length.

    States are plain (player, boxes) tuples inside the loop (hashing them is the hot spot)."""
    floor = [(r, c) for r in range(level.height) for c in range(level.width) if level.is_free((r, c))]
    free = set(floor)
    dirs = list(DIRECTIONS.values())
    depth: dict[tuple[Pos, frozenset[Pos]], int] = {}
    queue: deque[tuple[Pos, frozenset[Pos]]] = deque()
    for p in floor:
        if p not in solved_boxes:
            depth[(p, solved_boxes)] = 0
            queue.append((p, solved_boxes))
    while queue:
        s = queue.popleft()
        ds = depth[s]
        if ds >= max_depth:
            continue
        player, boxes = s
        pr, pc = player
        for dr, dc in dirs:
            back = (pr - dr, pc - dc)
            if back not in free or back in boxes:
                continue
            # plain step back (the inverse of a plain forward step in direction d)
            t = (back, boxes)
            if t not in depth:
                depth[t] = ds + 1
                queue.append(t)
            # pull: the box in front of the player follows it (the inverse of a push)
            front = (pr + dr, pc + dc)
            if front in boxes:
                t = (back, (boxes - {front}) | {player})
                if t not in depth:
                    depth[t] = ds + 1
                    queue.append(t)
    return {State(p, b): d for (p, b), d in depth.items()}


def generate_level(
    seed: int,
    dim_room: tuple[int, int] = (6, 6),
    num_boxes: int = 1,
    search_depth: int = 30,
    max_tries: int = 200,
) -> tuple[Level, State, int]:
    """A solvable level for `seed`: (level, start state, optimal solution length)."""
    h, w = dim_room
    if h < 3 or w < 3 or num_boxes < 1:
        raise InvalidArgumentError(f"dim_room must be at least 3x3 and num_boxes >= 1, got {dim_room}, {num_boxes}")
    rng = np.random.default_rng([int(seed), h, w, num_boxes, search_depth])
    steps = int(1.5 * (h + w))
    for _ in range(max_tries):
        floor = _topology(rng, h, w, steps)
        if len(floor) < num_boxes + 2:
            continue
        cells = sorted(floor)
        walls = frozenset((r, c) for r in range(h) for c in range(w) if (r, c) not in floor)
        pick = rng.choice(len(cells), size=num_boxes, replace=False)
        targets = frozenset(cells[int(i)] for i in pick)
        level = Level(h, w, walls, targets)
        depths = reverse_depths(level, targets, search_depth)
        candidates = [(d, s) for s, d in depths.items() if d > 0 and not (s.boxes & targets)]
        if not candidates:
            continue
        best = max(d for d, _ in candidates)
        if best < 2:
            continue
        top = sorted((s for d, s in candidates if d == best), key=lambda s: (s.player, sorted(s.boxes)))
        start = top[int(rng.integers(len(top)))]
        return level, start, best
    raise GenerationError(f"no solvable level after {max_tries} tries for dim_room={dim_room}, num_boxes={num_boxes}")
