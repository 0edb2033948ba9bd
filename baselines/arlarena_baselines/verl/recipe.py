"""Recipe configs: our presets (configs/*.yaml) composed onto verl's own Hydra config.

A preset has two sections: `verl:` (keys of verl's `ppo_trainer.yaml`, merged in struct mode so
a misspelt key fails at load) and `arlarena:` (env, pool backend, GiGPO, dynamic filtering,
invalid-action penalty: what verl has no key for). `extends: other.yaml` inherits. The result
is verl's DictConfig with an extra top-level `arlarena` node.

    cfg = compose("sampo_webshop", ["trainer.n_gpus_per_node=8", "arlarena.backend=ray"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import yaml

from arlarena_envs.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent / "configs"
PRESETS = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_preset(name_or_path: str | Path, _depth: int = 0) -> dict[str, Any]:
    """A preset's mapping with `extends` resolved."""
    p = Path(name_or_path)
    if not p.suffix:
        p = PRESET_DIR / f"{name_or_path}.yaml"
    elif not p.is_absolute() and not p.exists():
        p = PRESET_DIR / p
    if not p.exists():
        raise ConfigError(f"no verl preset {name_or_path!r}; presets: {PRESETS} (or give a YAML path)")
    if _depth > 8:
        raise ConfigError("preset `extends` chain is too deep (cycle?)")
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    parent = data.pop("extends", None)
    unknown = set(data) - {"verl", "arlarena"}
    if unknown:
        raise ConfigError(f"{p}: unknown sections {sorted(unknown)}; a preset has `verl:` and `arlarena:`")
    if parent:
        base = p.parent / parent
        data = _merge(load_preset(base if base.exists() else parent, _depth + 1), data)
    return data


def verl_config_dir() -> str:
    import verl.trainer.config as cfg_pkg

    return str(Path(cfg_pkg.__file__).resolve().parent)


def compose(preset: str | Path, overrides: Sequence[str] = ()) -> Any:
    """verl's `ppo_trainer` config with the preset and `key=value` overrides applied."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    data = load_preset(preset)
    ours = [o for o in overrides if o.startswith("arlarena.")]
    theirs = [o for o in overrides if not o.startswith("arlarena.")]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=verl_config_dir(), version_base=None):
        cfg = hydra_compose(config_name="ppo_trainer")
    OmegaConf.set_struct(cfg, True)
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.create(data.get("verl", {})))
        if theirs:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(theirs)))
    except Exception as e:  # omegaconf raises ConfigKeyError & co on a key verl does not have
        raise ConfigError(f"preset {preset}: {e}") from e
    arl = OmegaConf.create(data.get("arlarena", {}))
    if ours:
        arl = OmegaConf.merge(arl, OmegaConf.from_dotlist([o[len("arlarena."):] for o in ours]))
    OmegaConf.set_struct(cfg, False)
    cfg.arlarena = arl
    OmegaConf.set_struct(cfg, True)
    for key in ("env_id", "gigpo", "filter_groups"):
        if key not in cfg.arlarena:
            raise ConfigError(f"preset {preset}: arlarena.{key} is missing")
    return cfg


def algorithm_config(cfg: Any) -> Any:
    """Our AlgorithmConfig for the row scores and step returns (penalty, gamma, GiGPO mode)."""
    from arlarena_baselines.config import AlgorithmConfig

    a = cfg.arlarena
    c = float(a.get("invalid_action_penalty_coef", 0.1))
    return AlgorithmConfig(
        adv_estimator="gigpo" if "gigpo" in str(cfg.algorithm.adv_estimator) else "grpo",
        gamma=float(a.gigpo.get("gamma", cfg.algorithm.gamma)), step_advantage_w=float(a.gigpo.get("step_advantage_w", 1.0)),
        gigpo_mode=str(a.gigpo.get("mode", "mean_norm")), use_invalid_action_penalty=c > 0, invalid_action_penalty_coef=c,
    )


def estimator_config(cfg: Any) -> dict[str, Any]:
    """The `config` our verl estimator reads (`verl_adapter.verl_sampo_gigpo_advantage`)."""
    g = cfg.arlarena.gigpo
    return {"gigpo": {"step_advantage_w": float(g.get("step_advantage_w", 1.0)), "mode": str(g.get("mode", "mean_norm"))},
            "norm_adv_by_std_in_grpo": bool(cfg.algorithm.get("norm_adv_by_std_in_grpo", True))}
