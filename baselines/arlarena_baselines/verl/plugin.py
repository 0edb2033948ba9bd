"""verl plugin (entry point group `verl.plugins`, loaded by `import verl` in every process:
driver, Ray actor and rollout workers): registers the SAMPO loss and GiGPO estimator in verl's
registries and our agent loop in verl's agent-loop registry. Installing arlarena-envs next to
verl is all it takes; `VERL_USE_EXTERNAL_PLUGINS=none` turns it off."""

from arlarena_baselines.verl_adapter import register_with_verl

register_with_verl()

from arlarena_baselines.verl import agent_loop  # noqa: E402,F401  (its @register runs on import)
