"""Text Sokoban: procedural, always-solvable rooms and an optimal solver (the oracle)."""

from arlarena_envs.sokoban.env import SokobanEnv
from arlarena_envs.sokoban.generator import generate_level
from arlarena_envs.sokoban.solver import solve

__all__ = ["SokobanEnv", "generate_level", "solve"]
