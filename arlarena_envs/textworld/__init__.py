"""arlarena/TextWorld-v0: games from TextWorld's generator (extra `textworld`).

Importing this package does not need textworld; building an env does."""

from arlarena_envs.textworld.env import TextWorldEnv
from arlarena_envs.textworld.generator import PRESETS, game_for

__all__ = ["TextWorldEnv", "PRESETS", "game_for"]
