"""One-GPU check, offline: a Qwen2-architecture model of ~0.5B parameters built from a config
(the Qwen2.5-0.5B shape, random weights, no download), bf16 on CUDA; behaviour cloning then
SAMPO steps on Sokoban through our trainer with the transformers engine, and, when vLLM is
importable, the vLLM engine: generate, train a step, sync the weights, check the engine's
greedy outputs changed, then SAMPO steps with rollout.engine=vllm.

Prints generation tokens/s, RL step times and peak GPU memory, and writes them as JSON.

    python benchmarks/gpu_check.py                       # CUDA, ~0.5B, bf16 (target: < 8 min)
    python benchmarks/gpu_check.py --device cpu --tiny   # the same code path in seconds (CI)

The tokenizer is a local byte-level BPE trained on Sokoban text (tiny.train_tokenizer); the
model's vocabulary keeps Qwen2.5's 151,936 rows so the parameter count is the real one.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

ENV_ID = "arlarena/Sokoban-v0"
# Qwen2.5-0.5B's architecture (config.json of the released model), random weights
QWEN2_05B = dict(vocab_size=151_936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, max_position_embeddings=32_768, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
                 tie_word_embeddings=True)
TINY = dict(vocab_size=None, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=2048, tie_word_embeddings=True)


def build_policy(out_dir: Path, tiny: bool, seed: int = 0) -> tuple[Path, int]:
    """Train the BPE tokenizer on Sokoban oracle text, build the Qwen2 model from its config,
    save both as a local model directory; returns (dir, parameter count)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from arlarena_envs.pools import make_pool
    from arlarena_baselines.bc import collect_oracle_examples
    from arlarena_baselines.tiny import save_policy, train_tokenizer

    pool = make_pool(ENV_ID, 4, env_kwargs={"history_length": 0, "search_depth": 6})
    examples = collect_oracle_examples(pool, [500_000 + i for i in range(8)], "{action}")
    pool.close()
    tok = train_tokenizer([e.prompt for e in examples] + [e.response for e in examples] * 4, vocab_size=1024)
    shape = dict(TINY if tiny else QWEN2_05B)
    if shape["vocab_size"] is None:
        shape["vocab_size"] = len(tok)
    cfg = Qwen2Config(**shape, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    save_policy(model, tok, out_dir)
    del model
    return out_dir, n_params


def train_config(policy_dir: Path, device: str, tiny: bool, engine: str, steps: int, run_dir: Path) -> dict[str, Any]:
    """The sampo preset on demo-sized Sokoban (6x6, one box, 10 steps), shrunk for --tiny."""
    from arlarena_baselines.config import load_raw

    raw = load_raw("sampo")
    raw["model"] = {"path": str(policy_dir), "dtype": "float32" if device == "cpu" else "bfloat16"}
    raw["env"] = {"env_id": ENV_ID, "max_steps": 4 if tiny else 10, "env_kwargs": {"history_length": 0, "search_depth": 6}}
    raw["rollout"] = {
        "engine": engine, "num_groups": 1 if tiny else 8, "group_size": 2 if tiny else 8, "max_prompt_tokens": 1024,
        "sampling": {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "max_new_tokens": 8 if tiny else 32},
        "eval_sampling": {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "max_new_tokens": 8 if tiny else 32},
        "gpu_memory_utilization": 0.3,
    }
    raw["bc"] = {"enable": True, "episodes": 4 if tiny else 64, "epochs": 1, "batch_size": 8 if tiny else 64, "lr": 1e-4}
    raw["trainer"] = {
        "total_steps": steps, "lr": 1e-6, "ppo_mini_batch_size": 256, "ppo_micro_batch_size": 8 if tiny else 32,
        "eval_every": 0, "eval_episodes": 2 if tiny else 16, "eval_at_start": False, "save_every": 0, "keep_checkpoints": 1,
        "output_dir": str(run_dir.parent), "run_name": run_dir.name, "resume": False, "device": device, "progress": False,
        "num_threads": 1 if device == "cpu" else None,
    }
    raw["monitor"] = {"enable": False}
    raw["algorithm"]["filter_groups"] = {"enable": True, "max_num_gen_batches": 2, "cold_start_steps": 0}
    return raw


def rl_step_times(metrics_path: Path) -> list[float]:
    """Wall seconds of each RL step: differences of time_s between consecutive log lines."""
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    out, prev = [], None
    for r in rows:
        if r.get("phase") == "rl" and prev is not None:
            out.append(r["time_s"] - prev)
        prev = r.get("time_s", prev)
    return out


def generation_throughput(engine: Any, n_prompts: int, max_new_tokens: int) -> dict[str, float]:
    """Sampled generation on Sokoban prompts: response tokens per second."""
    from arlarena_envs.pools import make_pool
    from arlarena_envs.contract import SamplingParams

    pool = make_pool(ENV_ID, n_prompts, env_kwargs={"history_length": 0, "search_depth": 6})
    pool.reset(list(range(n_prompts)))
    prompts = pool.prompts()
    pool.close()
    sampling = SamplingParams(temperature=1.0, top_p=1.0, top_k=-1, max_new_tokens=max_new_tokens)
    engine.generate(prompts[:2], sampling)  # warm-up (kernels, caches)
    t0 = time.perf_counter()
    gens = engine.generate(prompts, sampling)
    dt = time.perf_counter() - t0
    tokens = sum(len(g.response_ids) for g in gens)
    return {"gen_prompts": n_prompts, "gen_tokens": tokens, "gen_seconds": dt, "tokens_per_s": tokens / dt}


def vllm_sync_check(policy_dir: Path, device: str, n_prompts: int, max_new_tokens: int) -> dict[str, Any]:
    """vLLM engine: greedy outputs, one large SFT step on the HF copy, sync, greedy again:
    the outputs must change (they come from the synced weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    from arlarena_envs.pools import make_pool
    from arlarena_envs.contract import SamplingParams
    from arlarena_baselines.rollout import VLLMEngine
    from arlarena_baselines.tiny import load_tokenizer

    tok = load_tokenizer(policy_dir)
    engine = VLLMEngine(str(policy_dir), tok, 1024, gpu_memory_utilization=0.3)
    figures = generation_throughput(engine, n_prompts, max_new_tokens)
    pool = make_pool(ENV_ID, 8, env_kwargs={"history_length": 0, "search_depth": 6})
    pool.reset(list(range(8)))
    prompts = pool.prompts()
    pool.close()
    greedy = SamplingParams(temperature=0.0, max_new_tokens=16)
    before = [g.response_ids for g in engine.generate(prompts, greedy)]
    model = AutoModelForCausalLM.from_pretrained(policy_dir, dtype=torch.bfloat16).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    target = tok("<think>up</think><action>up</action>", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([target], device=device)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    t0 = time.perf_counter()
    engine.sync_weights(model)
    sync_s = time.perf_counter() - t0
    after = [g.response_ids for g in engine.generate(prompts, greedy)]
    changed = sum(a != b for a, b in zip(before, after))
    del engine, model, opt
    gc.collect()
    torch.cuda.empty_cache()
    return {**{f"vllm_{k}": v for k, v in figures.items()}, "vllm_sync_s": sync_s, "vllm_outputs_changed": changed,
            "vllm_outputs_checked": len(prompts)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="a tiny model and batch: the same code path in seconds")
    ap.add_argument("--steps", type=int, default=None, help="SAMPO steps per engine (default 3; --tiny: 1)")
    ap.add_argument("--no-vllm", action="store_true", help="skip vLLM even when importable")
    ap.add_argument("--out", default="runs/gpu_check", help="work directory (model, runs, gpu_check.json)")
    args = ap.parse_args(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but torch sees no GPU; run with --device cpu --tiny for the CPU path", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = args.steps if args.steps is not None else (1 if args.tiny else 3)
    from arlarena_baselines.config import validate_config
    from arlarena_baselines.rollout import HFEngine
    from arlarena_baselines.tiny import load_tokenizer
    from arlarena_baselines.train import run

    t_start = time.perf_counter()
    policy_dir, n_params = build_policy(out / "init_policy", args.tiny)
    figures: dict[str, Any] = {"device": args.device, "tiny": args.tiny, "params": n_params,
                               "torch": torch.__version__, "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    # transformers engine: throughput of the initial policy, then BC + SAMPO through the trainer
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(policy_dir)
    dtype = torch.float32 if args.device == "cpu" else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(policy_dir, dtype=dtype).to(args.device)
    figures.update({f"hf_{k}": v for k, v in generation_throughput(HFEngine(model, tok, 1024), 4 if args.tiny else 64,
                                                                   8 if args.tiny else 64).items()})
    del model
    gc.collect()
    run_dir = out / "sampo_hf"
    res = run(validate_config(train_config(policy_dir, args.device, args.tiny, "hf", steps, run_dir)), run_dir=run_dir)
    times = rl_step_times(res.metrics_path)
    figures.update(hf_rl_steps=res.steps_done, hf_step_s=times, hf_step_s_mean=sum(times) / max(1, len(times)),
                   hf_final_eval_success=res.final_eval_success)
    if args.device == "cuda":
        figures["hf_peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    vllm_ok = False
    if not args.no_vllm and args.device == "cuda":
        try:
            import vllm  # noqa: F401

            vllm_ok = True
        except ImportError:
            figures["vllm"] = "not importable: pip install 'arlarena-envs[gpu]' for the vLLM part"
    elif args.device == "cpu":
        figures["vllm"] = "skipped on CPU (vLLM needs a GPU)"
    if vllm_ok:
        figures.update(vllm_sync_check(policy_dir, args.device, 64, 64))
        run_dir = out / "sampo_vllm"
        res = run(validate_config(train_config(policy_dir, args.device, args.tiny, "vllm", steps, run_dir)), run_dir=run_dir)
        times = rl_step_times(res.metrics_path)
        figures.update(vllm_rl_steps=res.steps_done, vllm_step_s=times, vllm_step_s_mean=sum(times) / max(1, len(times)))
        figures["vllm_peak_gpu_mem_gib_trainer_process"] = torch.cuda.max_memory_allocated() / 2**30
    figures["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    figures["total_s"] = time.perf_counter() - t_start

    (out / "gpu_check.json").write_text(json.dumps(figures, indent=2))
    print(f"gpu_check ({args.device}{', tiny' if args.tiny else ''}): {n_params / 1e6:.1f} M parameters, torch {torch.__version__}")
    print(f"  hf   generate: {figures['hf_tokens_per_s']:.1f} tokens/s ({figures['hf_gen_tokens']} tokens, {figures['hf_gen_prompts']} prompts)")
    print(f"  hf   SAMPO: {figures['hf_rl_steps']} steps, step time mean {figures['hf_step_s_mean']:.2f} s "
          f"({', '.join(f'{t:.2f}' for t in figures['hf_step_s'])})")
    if "hf_peak_gpu_mem_gib" in figures:
        print(f"  hf   peak GPU memory: {figures['hf_peak_gpu_mem_gib']:.2f} GiB")
    if vllm_ok:
        print(f"  vllm generate: {figures['vllm_tokens_per_s']:.1f} tokens/s; sync {figures['vllm_sync_s']:.2f} s; "
              f"greedy outputs changed after a train step + sync: {figures['vllm_outputs_changed']}/{figures['vllm_outputs_checked']}")
        print(f"  vllm SAMPO: {figures['vllm_rl_steps']} steps, step time mean {figures['vllm_step_s_mean']:.2f} s")
    else:
        print(f"  vllm: {figures.get('vllm')}")
    print(f"  peak RSS {figures['peak_rss_gib']:.2f} GiB, total {figures['total_s']:.1f} s -> {out / 'gpu_check.json'}")
    if vllm_ok and figures["vllm_outputs_changed"] == 0:
        print("gpu_check: FAILED: vLLM's outputs did not change after the weight sync", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
