"""`ArlArenaRayPPOTrainer`: verl 0.9's RayPPOTrainer with SAMPO's step (verl-agent's route).

verl's own loop unions its rollout output with one row per prompt repeat, i.e. one row per
trajectory; SAMPO updates on one row per turn. This subclass keeps verl's workers, resource
pools, checkpoints, weight sync to the rollout replicas, validation and logging, and replaces
`fit` with this step:

  1. generate: the dataloader's task rows, repeated rollout.n times (a group shares its seed),
     through verl's agent-loop manager -> our agent loop plays the episodes;
  2. dynamic filtering (arlarena.filter_groups, after cold_start_steps): drop groups whose
     episode rewards are all equal, re-generating up to max_num_gen_batches times;
  3. `turns.turn_rows`: one row per turn (masks, uid, traj_uid, anchors, step returns, scores);
  4. verl's old/ref log-prob passes, `turns.compute_advantages` with the estimator found in
     verl's registry (GiGPO gets its step returns, anchors and trajectory ids), verl's actor
     update (the SAMPO loss by name), weight sync.

Not run yet: it needs GPUs and a Ray cluster (docs/scale.md says what was run where).
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import torch
from verl.protocol import DataProto
from verl.trainer.ppo.ray_trainer import RayPPOTrainer

from arlarena_baselines.filtering import filter_active
from arlarena_baselines.verl import recipe
from arlarena_baselines.verl.turns import compute_advantages, episodes_of, filter_episode_groups, turn_rows


class ArlArenaRayPPOTrainer(RayPPOTrainer):
    """RayPPOTrainer whose step trains on SAMPO's per-turn rows (see the module docstring)."""

    def _generate(self, batch_dict: dict) -> DataProto:
        batch = DataProto.from_single_dict(batch_dict)
        batch.non_tensor_batch["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(batch))], dtype=object)
        gen_batch = self._get_gen_batch(batch)
        gen_batch.meta_info["global_steps"] = self.global_steps
        gen_batch = gen_batch.repeat(repeat_times=self.config.actor_rollout_ref.rollout.n, interleave=True)
        out = self.async_rollout_manager.generate_sequences(gen_batch)
        self.checkpoint_manager.sleep_replicas()
        out.meta_info.pop("timing", None)
        if "uid" not in out.non_tensor_batch:
            out.non_tensor_batch["uid"] = gen_batch.non_tensor_batch["uid"]
        return out

    def _episodes_for_step(self, first_batch: dict, metrics: dict) -> tuple[list, list[str]]:
        """Trajectories of one step, with dynamic filtering (ARL-Arena semantics)."""
        fcfg = self.config.arlarena.filter_groups
        active = filter_active(self.global_steps, bool(fcfg.enable), int(fcfg.cold_start_steps), True)
        needed = int(self.config.data.train_batch_size)
        kept: list[tuple[Any, str]] = []  # (episode, its group uid)
        tries, batch_dict = 0, first_batch
        while True:
            tries += 1
            episodes, uids = episodes_of(self._generate(batch_dict))
            uid_of = {id(e): u for e, u in zip(episodes, uids)}
            if not active:
                kept = list(zip(episodes, uids))
                break
            last = tries >= int(fcfg.max_num_gen_batches)
            have = len({u for _, u in kept})
            kept += [(e, uid_of[id(e)]) for e in filter_episode_groups(episodes, needed - have, last)]
            if len({u for _, u in kept}) >= needed or last:
                break
            batch_dict = next(self._data_iter, None)
            if batch_dict is None:  # the epoch ran out mid-step: start the next one
                self._data_iter = iter(self.train_dataloader)
                batch_dict = next(self._data_iter)
        for j, (e, _) in enumerate(kept):  # episode ids unique across generation tries
            e.episode = j
        metrics.update({"arlarena/gen_batches": tries, "arlarena/kept_groups": len({u for _, u in kept})})
        return [e for e, _ in kept], [u for _, u in kept]

    def _update_on_turns(self, turns: DataProto, metrics: dict) -> None:
        turns.meta_info["global_token_num"] = torch.sum(turns.batch["attention_mask"], dim=-1).tolist()
        turns.meta_info["temperature"] = self.config.actor_rollout_ref.rollout.temperature
        turns.meta_info["images_seqlens"] = []
        old_log_prob, _ = self._compute_old_log_prob(turns)
        old_log_prob.batch.pop("entropys", None)
        turns = turns.union(old_log_prob)
        if self.use_reference_policy:
            turns = turns.union(self._compute_ref_log_prob(turns))
        compute_advantages(turns, str(self.config.algorithm.adv_estimator), recipe.estimator_config(self.config))
        actor_output = self._update_actor(turns)
        self.checkpoint_manager.update_weights(self.global_steps)
        from verl.trainer.ppo.metric_utils import reduce_metrics

        metrics.update(reduce_metrics(actor_output.meta_info["metrics"]))

    def fit(self) -> None:
        from verl.utils.tracking import Tracking
        from omegaconf import OmegaConf

        logger = Tracking(project_name=self.config.trainer.project_name, experiment_name=self.config.trainer.experiment_name,
                          default_backend=self.config.trainer.logger, config=OmegaConf.to_container(self.config, resolve=True))
        self.global_steps = 0
        self._load_checkpoint()
        self.checkpoint_manager.update_weights(self.global_steps)
        if self.config.trainer.get("val_before_train", True):
            logger.log(data=self._validate(), step=self.global_steps)
        algo = recipe.algorithm_config(self.config)
        rollout = self.config.actor_rollout_ref.rollout
        self.global_steps = 1
        while self.global_steps <= self.total_training_steps:
            self._data_iter = iter(self.train_dataloader)
            for batch_dict in self._data_iter:
                metrics: dict[str, Any] = {}
                episodes, uids = self._episodes_for_step(batch_dict, metrics)
                turns = turn_rows(episodes, uids, pad_token_id=self.tokenizer.pad_token_id, prompt_length=rollout.prompt_length,
                                  response_length=rollout.response_length, algorithm=algo)
                metrics.update({
                    "arlarena/success": float(np.mean([e.won for e in episodes])),
                    "arlarena/episode_reward": float(np.mean([e.total_reward for e in episodes])),
                    "arlarena/turn_rows": len(turns),
                    "arlarena/valid_action_ratio": float(np.mean([t.valid_action for e in episodes for t in e.turns])),
                })
                self._update_on_turns(turns, metrics)
                last = self.global_steps >= self.total_training_steps
                if self.config.trainer.save_freq > 0 and (last or self.global_steps % self.config.trainer.save_freq == 0):
                    self._save_checkpoint()
                if self.config.trainer.test_freq > 0 and (last or self.global_steps % self.config.trainer.test_freq == 0):
                    metrics.update(self._validate())
                logger.log(data=metrics, step=self.global_steps)
                if last:
                    return
                self.global_steps += 1


def task_runner_class() -> Any:
    """A Ray actor class like verl's `main_ppo_v0.TaskRunner` whose trainer is ours."""
    import ray
    from verl.trainer.main_ppo_v0 import BaseTaskRunner
    from verl.trainer.ppo.utils import create_rl_dataset, create_rl_sampler, need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config
    from verl.utils.dataset.rl_dataset import collate_fn
    from verl.workers.config import HFModelConfig

    class ArlArenaTaskRunner(BaseTaskRunner):
        def run(self, config: Any) -> None:
            from omegaconf import OmegaConf

            OmegaConf.resolve(config)
            actor_rollout_cls, ray_worker_group_cls = self.add_actor_rollout_worker(config)
            self.add_critic_worker(config)
            self.add_reward_model_resource_pool(config)
            self.add_teacher_model_resource_pool(config)
            self.add_ref_policy_worker(config, actor_rollout_cls)
            validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
            model_config: HFModelConfig = omega_conf_to_dataclass(config.actor_rollout_ref.model)
            tok, proc = model_config.tokenizer, model_config.processor
            train = create_rl_dataset(config.data.train_files, config.data, tok, proc, is_train=True)
            val = create_rl_dataset(config.data.val_files, config.data, tok, proc, is_train=False)
            trainer = ArlArenaRayPPOTrainer(
                config=config, tokenizer=tok, processor=proc, role_worker_mapping=self.role_worker_mapping,
                resource_pool_manager=self.init_resource_pool_mgr(config), ray_worker_group_cls=ray_worker_group_cls,
                train_dataset=train, val_dataset=val, collate_fn=collate_fn, train_sampler=create_rl_sampler(config.data, train),
            )
            trainer.init_workers()
            trainer.fit()

    return ray.remote(num_cpus=1)(ArlArenaTaskRunner)
