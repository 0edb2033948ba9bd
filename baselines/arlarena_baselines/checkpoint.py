"""Checkpoints of a run: `<run_dir>/checkpoints/step_NNNNNN/` holds the policy (HF format), the
tokenizer, `optimizer.pt` (optimizer state and torch RNG) and `trainer_state.json` (step, clip
scale, lr, group counter, numpy RNG, monitor state). A checkpoint is written to `*.tmp` and
renamed, so a crash never leaves a half-written `step_*` folder that looks complete.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint, oldest first."""
    d = checkpoint_dir(run_dir)
    if not d.exists():
        return []
    return sorted((int(p.name[5:]), p) for p in d.iterdir() if p.name.startswith("step_") and (p / "trainer_state.json").exists())


def save_checkpoint(run_dir: Path, step: int, model: Any, tok: Any, opt: torch.optim.Optimizer, state: dict[str, Any]) -> Path:
    """Write checkpoint `step` (model, tokenizer, optimizer + torch RNG, `state` as JSON)."""
    path = checkpoint_dir(run_dir) / f"step_{step:06d}"
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    torch.save({"optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state()}, tmp / "optimizer.pt")
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **state}))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def prune_checkpoints(run_dir: Path, keep: int, last_healthy_step: int | None) -> None:
    """Keep the newest `keep` checkpoints, step 0, and the newest one at or before the
    monitor's last healthy step (the rollback target)."""
    ckpts = list_checkpoints(run_dir)
    protected = {0}
    if last_healthy_step is not None:
        older = [s for s, _ in ckpts if s <= last_healthy_step]
        if older:
            protected.add(max(older))
    for s, p in ckpts[:-keep]:
        if s not in protected:
            shutil.rmtree(p, ignore_errors=True)


def load_checkpoint(path: Path, model: Any, opt: torch.optim.Optimizer, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Restore the weights into `model`, the optimizer and the torch RNG; returns the trainer state."""
    from transformers import AutoModelForCausalLM

    fresh = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    model.load_state_dict(fresh.state_dict())
    blob = torch.load(path / "optimizer.pt", map_location=device, weights_only=True)
    opt.load_state_dict(blob["optimizer"])
    torch.set_rng_state(blob["torch_rng"].cpu())
    return json.loads((path / "trainer_state.json").read_text())


def rollback_target(run_dir: Path, step: int, last_healthy_step: int | None) -> Path | None:
    """The newest checkpoint before `step` and at or before the last healthy step (None: none)."""
    cands = [(s, p) for s, p in list_checkpoints(run_dir) if s < step and (last_healthy_step is None or s <= last_healthy_step)]
    return cands[-1][1] if cands else None
