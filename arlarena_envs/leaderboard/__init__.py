"""The leaderboard: play an env's fixed protocol with a policy (`evaluate`), one JSON file per
episode (resumable), one provenance-stamped `LeaderboardRow` per (env, policy), and the
Markdown / sortable HTML tables (`render`). See docs/leaderboard.md."""

from __future__ import annotations

from arlarena_envs.leaderboard.evaluate import evaluate, policy_slug, summarize
from arlarena_envs.leaderboard.models import (
    EpisodeResult,
    LeaderboardRow,
    Provenance,
    ProvenanceMismatchError,
    Stat,
    check_provenance,
)
from arlarena_envs.leaderboard.policies import LeaderboardPolicy, PolicyError, make_policy
from arlarena_envs.leaderboard.render import load_rows, render, render_html, render_markdown, validate_rows

__all__ = [
    "EpisodeResult",
    "LeaderboardPolicy",
    "LeaderboardRow",
    "PolicyError",
    "Provenance",
    "ProvenanceMismatchError",
    "Stat",
    "check_provenance",
    "evaluate",
    "load_rows",
    "make_policy",
    "policy_slug",
    "render",
    "render_html",
    "render_markdown",
    "summarize",
    "validate_rows",
]
