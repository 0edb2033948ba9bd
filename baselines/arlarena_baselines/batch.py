"""`TurnBatch`: the update's rows, built from the episode runner's records.

One row = one turn (`TurnRecord`) of one episode, episodes in the given order and the turns of
each in time order (the layout the advantage estimators assume). The batch keeps the records
and adds what the loss needs as tensors: the response mask (B, T), right-padded, and the
per-row ids the estimators group by.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from arlarena_envs.contract import EpisodeRecord, TurnRecord
from arlarena_envs.errors import ConfigError


@dataclass
class TurnBatch:
    turns: list[TurnRecord]
    group: list[int]  # GRPO group id of each row (uid)
    episode: list[int]  # episode id of each row (traj_uid)
    episode_native_reward: list[float]  # the row's episode reward before invalid penalties
    mask: torch.Tensor  # (B, T) float, 1 on response tokens

    @classmethod
    def from_episodes(cls, episodes: Sequence[EpisodeRecord]) -> "TurnBatch":
        rows = [(e, t) for e in episodes for t in e.turns]
        if not rows:
            raise ConfigError("no turns to train on: every episode of the batch is empty")
        missing = [t.turn for _, t in rows if t.prompt_ids is None or t.response_ids is None]
        if missing:
            raise ConfigError("a training turn has no token ids; roll out with a model engine (rollout.collect_rollouts)")
        width = max(1, max(len(t.response_ids or []) for _, t in rows))
        mask = torch.zeros(len(rows), width)
        for i, (_, t) in enumerate(rows):
            mask[i, : len(t.response_ids or [])] = 1
        return cls(
            turns=[t for _, t in rows],
            group=[e.group for e, _ in rows],
            episode=[e.episode for e, _ in rows],
            episode_native_reward=[e.native_reward for e, _ in rows],
            mask=mask,
        )

    def __len__(self) -> int:
        return len(self.turns)

    @property
    def width(self) -> int:
        """T: the longest response, in tokens (at least 1)."""
        return int(self.mask.shape[1])

    def token_ids(self, rows: Sequence[int] | None = None) -> list[tuple[list[int], list[int]]]:
        """(prompt ids, response ids) of the given rows (all by default)."""
        idx = range(len(self)) if rows is None else rows
        return [(self.turns[i].prompt_ids or [], self.turns[i].response_ids or []) for i in idx]

