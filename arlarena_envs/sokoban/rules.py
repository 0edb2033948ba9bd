"""Sokoban rules on a tiny immutable state: positions are (row, col) tuples.

A `Level` holds what never moves (walls, targets); a `State` what does (player, boxes).
Moves follow gym-sokoban's push actions: the player steps one cell; stepping into a box
pushes it when the cell behind it is free; walls and blocked boxes make the move a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass

Pos = tuple[int, int]

DIRECTIONS: dict[str, Pos] = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
ACTIONS: tuple[str, ...] = tuple(DIRECTIONS)

WALL, FLOOR, TARGET, BOX, BOX_ON_TARGET, PLAYER, PLAYER_ON_TARGET = "#", "_", "O", "X", "\u221a", "P", "S"


@dataclass(frozen=True)
class Level:
    height: int
    width: int
    walls: frozenset[Pos]
    targets: frozenset[Pos]

    def is_free(self, p: Pos) -> bool:
        return 0 <= p[0] < self.height and 0 <= p[1] < self.width and p not in self.walls


@dataclass(frozen=True)
class State:
    player: Pos
    boxes: frozenset[Pos]


def add(p: Pos, d: Pos) -> Pos:
    return (p[0] + d[0], p[1] + d[1])


def move(level: Level, state: State, action: str) -> tuple[State, int]:
    """Apply one action. Returns (new state, change in boxes on target: -1, 0 or +1)."""
    d = DIRECTIONS[action]
    nxt = add(state.player, d)
    if not level.is_free(nxt):
        return state, 0
    if nxt in state.boxes:
        behind = add(nxt, d)
        if not level.is_free(behind) or behind in state.boxes:
            return state, 0
        boxes = (state.boxes - {nxt}) | {behind}
        delta = (behind in level.targets) - (nxt in level.targets)
        return State(nxt, frozenset(boxes)), delta
    return State(nxt, state.boxes), 0


def is_solved(level: Level, state: State) -> bool:
    return state.boxes <= level.targets


def render(level: Level, state: State, sep: str = "\t") -> str:
    rows = []
    for r in range(level.height):
        cells = []
        for c in range(level.width):
            p = (r, c)
            if p in level.walls:
                ch = WALL
            elif p == state.player:
                ch = PLAYER_ON_TARGET if p in level.targets else PLAYER
            elif p in state.boxes:
                ch = BOX_ON_TARGET if p in level.targets else BOX
            else:
                ch = TARGET if p in level.targets else FLOOR
            cells.append(ch)
        rows.append(sep.join(cells))
    return "\n".join(rows)
