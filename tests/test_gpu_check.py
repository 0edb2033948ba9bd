"""`benchmarks/gpu_check.py --device cpu --tiny` runs the one-GPU check's code path (model from a
config, BC, SAMPO through the trainer, throughput and step-time figures) on CPU, so it cannot rot
while no GPU is at hand; and the vLLM engine refuses clearly where vLLM is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_tiny(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "baselines"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--tiny", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads((tmp_path / "gpu_check.json").read_text())
    assert figures["device"] == "cpu" and figures["tiny"] is True
    assert figures["hf_rl_steps"] == 1 and len(figures["hf_step_s"]) == 1 and figures["hf_step_s"][0] > 0
    assert figures["hf_gen_tokens"] > 0 and figures["hf_tokens_per_s"] > 0
    assert "tokens/s" in proc.stdout and "step time" in proc.stdout
    assert (tmp_path / "sampo_hf" / "metrics.jsonl").exists()


def test_vllm_engine_without_vllm_says_what_to_install():
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vLLM is installed here")
    from arlarena_envs.errors import MissingDependencyError

    from arlarena_baselines.rollout import VLLM_SUPPORTED, VLLMEngine

    with pytest.raises(MissingDependencyError, match=r"arlarena-envs\[gpu\]"):
        VLLMEngine("unused", tokenizer=None)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'gpu = ["vllm{VLLM_SUPPORTED}"]' in pyproject  # the extra pins the versions the engine supports


def test_ipc_handles_travel_as_text():
    import base64
    import pickle

    from arlarena_baselines.rollout import _pickled_handles

    info = {"names": ["w"], "dtype_names": ["bfloat16"], "shapes": [[2]], "ipc_handles": [{"gpu-0": (1, (2,), "x")}]}
    shipped = _pickled_handles(info)
    assert "ipc_handles" not in shipped and isinstance(shipped["ipc_handles_pickled"], str)
    assert pickle.loads(base64.b64decode(shipped["ipc_handles_pickled"])) == info["ipc_handles"]
    assert _pickled_handles({"names": []}) == {"names": []}
