"""The leaderboard evaluation loop: an env's fixed protocol, one JSON file per episode
(resumable, BALROG-style), and the `LeaderboardRow` summary.

    row = evaluate("arlarena/Sokoban-v0", "oracle", out_dir="runs/leaderboard")

Protocol (from the spec): the `leaderboard.split`, `leaderboard.episodes` episodes, episode i
played with `reset(seed=i, options={"task_index": i mod split size, "split": split})`, the
spec's protocol (max steps, template, history length, parse mode) and `leaderboard.sampling`
for model policies. Files: `<out_dir>/<Env>-vN/<policy slug>/episodes/ep_00000.json` and
`row.json` next to them. A re-run skips the episodes already on disk (resume) after checking
that they were written under the same provenance (`ProvenanceMismatchError` otherwise).

Sampling policies may play each task several times (`samples_per_task` = s > 1, for pass@k):
episode k = 0..n*s-1 plays task position k mod n (sample k div n) with seed k, so sample 0 of
each task is the episode a one-sample run plays; pass@k is then computed per task (passk.py).

Row figures, over episodes e = 1..n (stderr = sample std / sqrt(n)):
success = mean(won_e); score = mean(info.score at the end); reward = mean(sum of rewards);
steps = mean(steps_e); parse_rates[s] = turns with parse status s / all turns;
per_task_type[t]: the same restricted to episodes whose `info.extra["task_type"]` is t.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from arlarena_envs.contract import EnvSpec, ParseStatus, Protocol, SamplingParams
from arlarena_envs.episodes import Reply, TurnView, run_episodes
from arlarena_envs.errors import ConfigError
from arlarena_envs.leaderboard.models import (
    EpisodeResult,
    EpisodeSummary,
    LeaderboardRow,
    Provenance,
    ProvenanceMismatchError,
    Stat,
    TaskTypeStats,
    TrainingProvenance,
    data_checksum,
    digest_records,
)
from arlarena_envs.leaderboard.passk import pass_at_k_table, successes_by_task
from arlarena_envs.leaderboard.policies import LeaderboardPolicy, make_policy
from arlarena_envs.leaderboard.trained import git_commit, utc_now
from arlarena_envs.pools import InProcessPool
from arlarena_envs.registry import create_env, get_spec


def policy_slug(spec: str) -> str:
    """A file-system-safe name for a policy spec (`openai:Qwen/Qwen3@http://..` -> `openai_Qwen_Qwen3_...`)."""
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", spec).strip("_")
    return slug[:120] or "policy"


def run_dir(out_dir: str | Path, env_id: str, policy: str) -> Path:
    return Path(out_dir) / get_spec(env_id).name / policy_slug(policy)


def build_provenance(
    spec: EnvSpec,
    policy: LeaderboardPolicy,
    episodes: int,
    sampling: SamplingParams,
    checkpoint_rule: str,
    overrides: dict[str, Any],
    samples_per_task: int = 1,
    training: TrainingProvenance | None = None,
) -> Provenance:
    from arlarena_envs import __version__

    assert spec.leaderboard is not None
    protocol = spec.protocol.model_copy(update={k: v for k, v in overrides.items() if k in Protocol.model_fields})
    return Provenance(
        package_version=__version__,
        env_id=spec.id,
        env_version=spec.version,
        golden_fingerprint=spec.fingerprint(),
        data_checksum=data_checksum(spec),
        template_id=protocol.template_id,
        protocol=protocol,
        split=spec.leaderboard.split,
        episodes=episodes,
        sampling=sampling,
        checkpoint_rule=checkpoint_rule,
        overrides=overrides,
        policy=policy.describe(),
        samples_per_task=samples_per_task,
        evaluated_at=utc_now(),
        eval_code_commit=git_commit(),
        training=training,
    )


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def episode_files_without_timing(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every episode file below an `evaluate` output folder, as JSON by `<Env>/<policy>/<file>`,
    without its wall time: what two evaluations of one protocol and policy must agree on
    whatever their batch size or worker count."""
    out: dict[str, dict[str, Any]] = {}
    root = Path(out_dir)
    for f in sorted(root.glob("*/*/episodes/ep_*.json")):
        d = json.loads(f.read_text(encoding="utf-8"))
        d.pop("elapsed_s")
        out[f.relative_to(root).as_posix().replace("/episodes/", "/")] = d
    return out


def task_of(index: int, tasks: int, split_size: int) -> int:
    """The split task index episode `index` plays: task position index mod `tasks`, wrapped to the split."""
    return (index % tasks) % split_size


def play_episode(env: Any, policy: LeaderboardPolicy, index: int, split: str, task_index: int, key: str, keep_prompts: bool) -> EpisodeResult:
    """Play episode `index` (seed `index`, task `task_index`) to its end (the episode runner over a one-env pool)."""
    t0 = time.perf_counter()
    policy.reset(index)

    def act(view: TurnView) -> list[Reply | None]:
        return [Reply(policy.act(view.observations[0], env))]

    pool = InProcessPool.of_envs([env])
    options = {"task_index": task_index, "split": split}
    (episode,) = run_episodes(pool, act, [index], options=[options], first_episode=index, keep_prompts=keep_prompts)
    return EpisodeResult.from_episode(episode, index=index, episode_key=key, elapsed_s=time.perf_counter() - t0)


def play_batch(envs: Sequence[Any], policy: LeaderboardPolicy, indices: Sequence[int], split: str, task_indices: Sequence[int],
               key: str, keep_prompts: bool) -> list[EpisodeResult]:
    """Play episodes `indices` side by side, one env each, the policy answering every active
    env's prompt in one `respond` call per turn. A batchable policy gives each episode the
    responses it gets alone, so the files equal `play_episode`'s (elapsed_s: the batch's wall time)."""
    t0 = time.perf_counter()
    policy.start(indices)

    def act(view: TurnView) -> list[Reply | None]:
        return [Reply(text) for text in policy.respond([indices[j] for j in view.active], view.prompts)]

    pool = InProcessPool.of_envs(list(envs[: len(indices)]))
    options = [{"task_index": t, "split": split} for t in task_indices]
    episodes = run_episodes(pool, act, list(indices), options=options, first_episode=indices[0], keep_prompts=keep_prompts)
    elapsed = time.perf_counter() - t0
    return [EpisodeResult.from_episode(e, index=i, episode_key=key, elapsed_s=elapsed) for e, i in zip(episodes, indices)]


def watch_parent(parent_pid: int, interval_s: float = 0.2) -> None:
    """Worker initializer: exit (code 1) as soon as the evaluating process is gone.

    A SIGKILLed or SIGTERMed `evaluate` cannot shut its pool down, and orphaned workers would
    keep writing episode files, racing a later resume. Each worker polls its parent from a
    daemon thread; episode files are written atomically, so exiting mid-episode leaves none
    half-written."""
    import threading

    def gone() -> bool:
        if os.getppid() == parent_pid:
            return False
        # not our direct parent (it died and we were re-parented, or forkserver/spawn started us)
        try:
            import psutil
        except ImportError:
            try:
                os.kill(parent_pid, 0)
                return False
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        try:
            return psutil.Process(parent_pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:
            return False

    def loop() -> None:
        while not gone():
            time.sleep(interval_s)
        os._exit(1)

    threading.Thread(target=loop, name="arlarena-parent-watch", daemon=True).start()


def _play_chunk(env_id, policy_spec, sampling, backend, env_kwargs, indices, split, tasks, n_tasks, key, keep_prompts, ep_dir) -> list[int]:
    """Worker process: play `indices` with a fresh env and policy; write their files."""
    spec = get_spec(env_id)
    pol = make_policy(policy_spec, spec, sampling)
    env = create_env(env_id=spec.id, backend=backend, **env_kwargs)
    try:
        for i in indices:
            e = play_episode(env, pol, i, split, task_of(i, tasks, n_tasks), key, keep_prompts)
            _write_atomic(Path(ep_dir) / f"ep_{i:05d}.json", e.model_dump_json())
    finally:
        env.close()
        pol.close()
    return list(indices)


def summarize(results: list[EpisodeResult], provenance: Provenance, policy_spec: str, policy_kind: str) -> LeaderboardRow:
    """The row figures from the episode records (formulas in the module docstring); the row
    carries the per-episode records and their digest so that `render` can recompute both."""
    records = [EpisodeSummary.of(e) for e in sorted(results, key=lambda e: e.index)]
    return LeaderboardRow(
        env_id=provenance.env_id,
        policy=policy_spec,
        policy_kind=policy_kind,
        provenance=provenance,
        records=records,
        records_digest=digest_records(records),
        pass_at_k=pass_figures(records, provenance),
        **row_figures(records),
    )


def pass_figures(records: list[EpisodeSummary], provenance: Provenance) -> dict[int, float]:
    """k -> pass@k over the row's tasks when each task was sampled more than once, else {}
    (one sample per task: pass@1 is the success rate)."""
    s = provenance.samples_per_task
    if s <= 1:
        return {}
    return pass_at_k_table(successes_by_task({e.index: e.won for e in records}, provenance.episodes, s))


def row_figures(records: list[EpisodeSummary]) -> dict[str, Any]:
    """episodes, success, score, reward, steps, parse_rates, per_task_type of a row."""
    records = sorted(records, key=lambda e: e.index)
    turns = sum(e.steps for e in records)
    counts: dict[str, int] = {s.value: 0 for s in ParseStatus}
    for e in records:
        for k, v in e.parse_counts.items():
            counts[k] = counts.get(k, 0) + v
    by_type: dict[str, list[EpisodeSummary]] = {}
    for e in records:
        if e.task_type is not None:
            by_type.setdefault(e.task_type, []).append(e)
    return dict(
        episodes=len(records),
        success=Stat.of([float(e.won) for e in records]),
        score=Stat.of([e.score for e in records]),
        reward=Stat.of([e.total_reward for e in records]),
        steps=Stat.of([float(e.steps) for e in records]),
        parse_rates={k: (v / turns if turns else 0.0) for k, v in counts.items()},
        per_task_type={
            t: TaskTypeStats(episodes=len(es), success=Stat.of([float(e.won) for e in es]), score=Stat.of([e.score for e in es]))
            for t, es in sorted(by_type.items())
        },
    )


def evaluate(
    env_id: str,
    policy: str | LeaderboardPolicy,
    episodes: int | None = None,
    out_dir: str | Path = "runs/leaderboard",
    backend: str = "inprocess",
    *,
    url: str | None = None,
    resume: bool = True,
    checkpoint_rule: str | None = None,
    max_steps: int | None = None,
    sampling: SamplingParams | None = None,
    stability_run: str | Path | None = None,
    keep_prompts: bool = False,
    progress: Callable[[int, int, EpisodeResult], None] | None = None,
    workers: int = 1,
    samples_per_task: int = 1,
    training: TrainingProvenance | None = None,
    batch_size: int = 1,
) -> LeaderboardRow:
    """Evaluate `policy` (a spec string or a built policy) on `env_id` under its leaderboard protocol.

    episodes: None = the protocol's count (a different count is recorded as an override, so
    the row is not comparable); max_steps / sampling: overrides for smoke tests (same).
    stability_run: a training run directory whose `arlarena stability` score goes in the row.
    workers: processes playing episodes in parallel (random / oracle given as spec strings;
    model policies always run in this process). Episodes are seeded by their index, so the
    files and the row are the same for any number of workers.
    samples_per_task: plays each of the n tasks that many times (sampling policies only; the
    row then carries pass@k); training: the provenance of a trained policy (trained.py).
    batch_size: model policies (hf:, openai:) play this many episodes side by side, one batched
    generation (or that many concurrent requests) per turn; each episode samples from its own
    seed, so the files are the same for any batch size.
    Writes the episode files and `row.json` under `run_dir(out_dir, env_id, policy)`."""
    spec = get_spec(env_id)
    if spec.leaderboard is None:
        raise ConfigError(f"{spec.id} has no leaderboard protocol; add a `leaderboard:` section to its registry file")
    lb = spec.leaderboard
    overrides: dict[str, Any] = {}
    if episodes is not None and episodes != lb.episodes:
        overrides["episodes"] = episodes
    if max_steps is not None and max_steps != spec.protocol.max_steps:
        overrides["max_steps"] = max_steps
    if sampling is not None and sampling != lb.sampling:
        overrides["sampling"] = sampling.model_dump()
    n = episodes if episodes is not None else lb.episodes
    if n < 1:
        raise ConfigError(f"episodes must be >= 1, got {n}")
    samp = sampling or lb.sampling
    if samples_per_task < 1:
        raise ConfigError(f"samples_per_task must be >= 1, got {samples_per_task}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    pol = policy if isinstance(policy, LeaderboardPolicy) else make_policy(policy, spec, samp)
    if batch_size > 1 and not pol.batchable:
        pol.close()
        raise ConfigError(f"batch_size {batch_size}: {pol.kind} policies play one episode at a time; "
                          "batches are for model policies (hf:, openai:), random / oracle run in parallel with workers")
    if samples_per_task > 1 and (pol.kind == "oracle" or (pol.kind in ("hf", "openai") and samp.temperature <= 0)):
        pol.close()
        raise ConfigError(
            f"{pol.spec} does not sample (oracle, or temperature {samp.temperature}): every sample of a task would be "
            "the same episode; use samples_per_task=1 (its pass@1 is the success rate)"
        )
    if checkpoint_rule is None:
        if training is not None:
            checkpoint_rule = f"{training.checkpoint_rule} (step {training.checkpoint_step})"
        else:
            checkpoint_rule = "n/a" if pol.kind in ("random", "oracle") else "unspecified"
    prov = build_provenance(spec, pol, n, samp, checkpoint_rule, overrides, samples_per_task, training)
    key = prov.episode_key()
    folder = Path(out_dir) / spec.name / policy_slug(pol.spec)
    ep_dir = folder / "episodes"
    ep_dir.mkdir(parents=True, exist_ok=True)
    total = n * samples_per_task

    done: dict[int, EpisodeResult] = {}
    for p in sorted(ep_dir.glob("ep_*.json")):
        if not resume:
            p.unlink()
            continue
        e = EpisodeResult.model_validate_json(p.read_text(encoding="utf-8"))
        if e.episode_key != key:
            raise ProvenanceMismatchError(
                f"{p} was written under another protocol/policy/provenance (key {e.episode_key} != {key}); "
                f"use another --out or --no-resume to start over"
            )
        if e.index < total:
            done[e.index] = e

    env_kwargs: dict[str, Any] = {"split": lb.split}
    if max_steps is not None:
        env_kwargs["max_steps"] = max_steps
    todo = [i for i in range(total) if i not in done]
    n_tasks = spec.splits[lb.split].size
    if url:
        env_kwargs["url"] = url
    if todo and workers > 1 and isinstance(policy, str) and pol.kind in ("random", "oracle"):
        # episodes are independent and seeded by their index: the same files as a serial run
        from concurrent.futures import ProcessPoolExecutor, as_completed

        chunks = [todo[k::workers] for k in range(workers) if todo[k::workers]]
        with ProcessPoolExecutor(max_workers=len(chunks), initializer=watch_parent, initargs=(os.getpid(),)) as ex:
            futs = [
                ex.submit(_play_chunk, spec.id, pol.spec, samp, backend, env_kwargs, c, lb.split, n, n_tasks, key, keep_prompts, str(ep_dir))
                for c in chunks
            ]
            for fut in as_completed(futs):
                for i in fut.result():
                    e = EpisodeResult.model_validate_json((ep_dir / f"ep_{i:05d}.json").read_text(encoding="utf-8"))
                    done[i] = e
                    if progress is not None:
                        progress(len(done), total, e)
        pol.close()
    elif todo and batch_size > 1:
        envs: list[Any] = []
        try:
            for _ in range(min(batch_size, len(todo))):
                envs.append(create_env(env_id=spec.id, backend=backend, **env_kwargs))
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                for e in play_batch(envs, pol, chunk, lb.split, [task_of(i, n, n_tasks) for i in chunk], key, keep_prompts):
                    _write_atomic(ep_dir / f"ep_{e.index:05d}.json", e.model_dump_json())
                    done[e.index] = e
                    if progress is not None:
                        progress(len(done), total, e)
        finally:
            for env in envs:
                env.close()
            pol.close()
    elif todo:
        env = create_env(env_id=spec.id, backend=backend, **env_kwargs)
        try:
            for i in todo:
                e = play_episode(env, pol, i, lb.split, task_of(i, n, n_tasks), key, keep_prompts)
                _write_atomic(ep_dir / f"ep_{i:05d}.json", e.model_dump_json())
                done[i] = e
                if progress is not None:
                    progress(len(done), total, e)
        finally:
            env.close()
            pol.close()
    else:
        pol.close()
    row = summarize(list(done.values()), prov, pol.spec, pol.kind)
    if stability_run is not None:
        from arlarena_envs.stability import analyze_runs

        runs = analyze_runs([stability_run]).runs
        where = str(stability_run)
        if training is not None and "metrics" in training.artefacts:
            where = training.artefacts["metrics"]  # the committed copy, relative to the results folder
        row = row.model_copy(update={"stability_score": runs[0].stability_score, "stability_run": where})
    _write_atomic(folder / "row.json", row.model_dump_json(indent=2) + "\n")
    return row
