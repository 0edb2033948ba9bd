"""arlarena/ALFWorld-v0 on the real alfworld/textworld engine (extra `alfworld`).

Importing this package needs neither alfworld nor textworld: the engine is imported when an
env is built (and the registry says which extra to install when it is missing)."""

from arlarena_envs.alfworld.env import ALFWorldEnv
from arlarena_envs.alfworld.generator import TASK_TYPES, generate_game, write_game
from arlarena_envs.alfworld.official import OFFICIAL_SPLITS, collect_official_games

__all__ = ["ALFWorldEnv", "TASK_TYPES", "OFFICIAL_SPLITS", "collect_official_games", "generate_game", "write_game"]
