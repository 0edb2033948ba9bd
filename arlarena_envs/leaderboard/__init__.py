"""The leaderboard: play an env's fixed protocol with a policy (`evaluate`), one JSON file per
episode (resumable), one provenance-stamped `LeaderboardRow` per (env, policy), and the
Markdown / sortable HTML tables (`render`). See docs/leaderboard.md."""

from __future__ import annotations

from arlarena_envs.leaderboard.evaluate import episode_files_without_timing, evaluate, policy_slug, summarize
from arlarena_envs.leaderboard.models import (
    EpisodeResult,
    LeaderboardRow,
    Provenance,
    ProvenanceMismatchError,
    Stat,
    TrainingProvenance,
    check_provenance,
)
from arlarena_envs.leaderboard.passk import pass_at_k, pass_at_k_table
from arlarena_envs.leaderboard.policies import LeaderboardPolicy, PolicyError, make_policy
from arlarena_envs.leaderboard.render import env_matrix, load_rows, render, render_html, render_markdown, validate_rows
from arlarena_envs.leaderboard.trained import config_digest, select_checkpoint
from arlarena_envs.leaderboard.trained_row import evaluate_trained

__all__ = [
    "EpisodeResult",
    "LeaderboardPolicy",
    "LeaderboardRow",
    "PolicyError",
    "Provenance",
    "ProvenanceMismatchError",
    "Stat",
    "TrainingProvenance",
    "check_provenance",
    "config_digest",
    "env_matrix",
    "episode_files_without_timing",
    "evaluate",
    "evaluate_trained",
    "load_rows",
    "make_policy",
    "pass_at_k",
    "pass_at_k_table",
    "policy_slug",
    "render",
    "render_html",
    "render_markdown",
    "select_checkpoint",
    "summarize",
    "validate_rows",
]
