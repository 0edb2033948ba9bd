"""SAMPO on verl (0.9.x): our envs inside verl's rollout, one training row per turn, GiGPO's
step returns / anchors / trajectory ids carried to the estimator, dynamic filtering, the SAMPO
loss. Lives in the separate `verl` extra (verl caps transformers below what vLLM needs).

    python -m arlarena_baselines.verl --config sampo_webshop [hydra overrides ...]

Pieces (each a module here):
  agent_loop   `ArlArenaAgentLoop`, registered in verl's agent-loop registry as "arlarena_agent":
               plays one episode of any registered env through our pools and episode runner,
               asking verl's LLM server for each turn; the EpisodeRecord rides in extra_fields
  turns        one verl row per turn (prompt rebuilt from the env template), masks, uids,
               traj_uid, anchor state hashes, discounted step returns; dynamic filtering
  trainer      `ArlArenaRayPPOTrainer`: verl's RayPPOTrainer with a fit loop that expands the
               trajectories to turn rows before the update (verl-agent's route: verl's own loop
               unions one row per trajectory)
  recipe       config composition with verl's own Hydra configs + our presets (configs/*.yaml)
See docs/scale.md.
"""
