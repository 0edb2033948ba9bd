"""WebShop: the original page flow, action grammar and reward over an embedded, generated
catalogue (arlarena/WebShop-v0) or the original data files (arlarena/WebShop-original-v0)."""

from arlarena_envs.webshop.env import WebShopEnv
from arlarena_envs.webshop.reward import get_reward

__all__ = ["WebShopEnv", "get_reward"]
