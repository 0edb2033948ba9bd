"""Trained-policy rows: pass@k, several samples per task, checkpoint rules, training
provenance and artefacts, the stability column, the policy x env matrix and the links."""

from __future__ import annotations

import json
import re
from math import comb
from pathlib import Path

import pytest

from arlarena_envs.contract import SamplingParams
from arlarena_envs.errors import ConfigError, DataError
from arlarena_envs.leaderboard import (
    EpisodeResult,
    LeaderboardRow,
    Stat,
    config_digest,
    env_matrix,
    evaluate,
    evaluate_trained,
    pass_at_k,
    pass_at_k_table,
    render,
    select_checkpoint,
)
from arlarena_envs.leaderboard.models import RowInconsistentError
from arlarena_envs.leaderboard.passk import default_ks
from arlarena_envs.leaderboard.trained import export_run, training_provenance
from arlarena_envs.stability import analyze_runs
from trained_run_fixtures import fake_run as _fake_run
from trained_run_fixtures import trained_results

SOKO = "arlarena/Sokoban-v0"


# ------------------------------------------------------------------------------------ pass@k


@pytest.mark.parametrize(
    "n,c,k,want",
    [
        (5, 0, 1, 0.0),
        (5, 5, 1, 1.0),
        (5, 2, 1, 0.4),  # pass@1 = c / n
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (4, 1, 4, 1.0),  # n - c < k: some draw of 4 always holds the success
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (2, 1, 2, 1.0),
    ],
)
def test_pass_at_k_known_values(n, c, k, want):
    assert pass_at_k(n, c, k) == pytest.approx(want)


def test_pass_at_k_is_the_chance_that_k_draws_without_replacement_hold_a_success():
    from itertools import combinations

    outcomes = [True, False, False, True, False, False]
    for k in range(1, 7):
        draws = list(combinations(outcomes, k))
        assert pass_at_k(6, 2, k) == pytest.approx(sum(any(d) for d in draws) / comb(6, k))


def test_pass_at_k_table_averages_over_tasks():
    table = pass_at_k_table([[True, False], [False, False], [True, True]])
    assert table == {1: pytest.approx((0.5 + 0 + 1) / 3), 2: pytest.approx((1 + 0 + 1) / 3)}
    assert default_ks(1) == [1] and default_ks(4) == [1, 2, 4] and default_ks(6) == [1, 2, 4, 6]
    with pytest.raises(ConfigError, match="same number of samples"):
        pass_at_k_table([[True], [True, False]])
    with pytest.raises(ConfigError):
        pass_at_k(3, 4, 1)


def test_samples_per_task_play_each_task_n_times(tmp_path):
    once = evaluate(SOKO, "random", episodes=3, max_steps=6, out_dir=tmp_path / "once")
    row = evaluate(SOKO, "random", episodes=3, max_steps=6, out_dir=tmp_path / "n", samples_per_task=4)
    assert row.episodes == 12 and row.provenance.episodes == 3 and row.provenance.samples_per_task == 4
    files = sorted((tmp_path / "n" / "Sokoban-v0" / "random" / "episodes").glob("ep_*.json"))
    eps = [EpisodeResult.model_validate_json(f.read_text()) for f in files]
    assert [(e.index, e.seed, e.task_index) for e in eps] == [(k, k, k % 3) for k in range(12)]
    # sample 0 of each task is the one-sample run's episode
    first = sorted((tmp_path / "once" / "Sokoban-v0" / "random" / "episodes").glob("ep_*.json"))
    for f in first:
        a = EpisodeResult.model_validate_json(f.read_text())
        assert (a.won, a.steps, a.total_reward) == (eps[a.index].won, eps[a.index].steps, eps[a.index].total_reward)
    by_task = [[eps[j * 3 + t].won for j in range(4)] for t in range(3)]
    assert row.pass_at_k == pytest.approx(pass_at_k_table(by_task)) and set(row.pass_at_k) == {1, 2, 4}
    assert row.pass_at_k[1] == pytest.approx(row.success.mean)
    assert once.pass_at_k == {}  # one sample per task: pass@1 is the success rate
    with pytest.raises(ConfigError, match="does not sample"):
        evaluate(SOKO, "oracle", episodes=2, out_dir=tmp_path / "o", samples_per_task=2)


# ------------------------------------------------------------------------- a trainer run dir


def test_checkpoint_rules(tmp_path):
    run = _fake_run(tmp_path)
    assert select_checkpoint(run, "last")[0] == 4
    assert select_checkpoint(run, "best-eval")[0] == 2  # step 3 evaluated higher but has no checkpoint
    assert select_checkpoint(run, "step:0")[0] == 0
    with pytest.raises(ConfigError, match="kept steps are"):
        select_checkpoint(run, "step:3")
    with pytest.raises(ConfigError, match="unknown checkpoint rule"):
        select_checkpoint(run, "best")
    tie = _fake_run(tmp_path / "tie", evals={0: 0.5, 2: 0.5, 4: 0.5})
    assert select_checkpoint(tie, "best-eval")[0] == 0  # ties: the earliest step
    with pytest.raises(DataError, match="no complete checkpoints"):
        select_checkpoint(_fake_run(tmp_path / "none", steps=()), "last")


def test_config_digest_is_the_canonical_json_hash():
    a = {"trainer": {"seed": 0, "lr": 1e-3}, "env": {"env_id": SOKO}}
    b = {"env": {"env_id": SOKO}, "trainer": {"lr": 1e-3, "seed": 0}}
    assert config_digest(a) == config_digest(b) and len(config_digest(a)) == 16
    assert config_digest(a) != config_digest({**a, "trainer": {"seed": 1, "lr": 1e-3}})


def test_training_provenance_records_the_run(tmp_path):
    launch = {"code_commit": "0123abcd", "command": "arlarena train --config demo_cpu --set trainer.seed=3"}
    run = _fake_run(tmp_path / "a", launch=launch)
    step, ckpt = select_checkpoint(run, "best-eval")
    files, copied = export_run(run, tmp_path / "res" / "runs" / run.name, ckpt)
    assert copied and set(files) == {"config", "metrics", "result", "launch", "stability", "policy"}
    arts = {k: f"runs/{run.name}/{v}" for k, v in files.items()}
    t = training_provenance(run, "best-eval", step, ckpt, artefacts=arts, weights_in_repo=copied)
    cfg = json.loads((run / "config.json").read_text())
    assert (t.seed, t.steps_trained, t.total_steps, t.checkpoint_step, t.checkpoint_eval_success) == (3, 4, 4, 2, 0.3)
    assert t.config_digest == config_digest(cfg) and t.algorithm == "sampo" and t.trained_env_id == SOKO
    assert (t.code_commit, t.code_commit_source) == ("0123abcd", "training run")
    assert t.regenerate.startswith(launch["command"]) and "step_000002" in t.regenerate
    policy = tmp_path / "res" / "runs" / run.name / "policy"
    assert (policy / "model.safetensors").read_bytes() == b"weights of step 2"
    assert not (policy / "optimizer.pt").exists()  # the optimizer state stays behind
    # without a launcher record the commit is the evaluating tree's, and says so
    bare = _fake_run(tmp_path / "b")
    t2 = training_provenance(bare, "last", 4, bare / "checkpoints" / "step_000004", artefacts={}, weights_in_repo=False,
                             config_ref="results/runs/x/config.json")
    assert t2.code_commit_source == "evaluation"
    assert t2.regenerate.startswith("arlarena train --config results/runs/x/config.json --run-dir runs/")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 1-layer Llama with a 320-token BPE: a real `hf:` policy that loads and samples fast."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<eos>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["<think>up</think><action>up</action>", "down left right # _ O X P"], trainer)
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
    hf_tok.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}>{% endif %}"
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(hf_tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                                   eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id)
    path = tmp_path_factory.mktemp("tiny_llama")
    transformers.LlamaForCausalLM(cfg).save_pretrained(path)
    hf_tok.save_pretrained(path)
    return path


@pytest.mark.slow
def test_evaluate_trained_end_to_end_with_an_hf_checkpoint(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # rows name paths relative to where they were evaluated
    run = _fake_run(Path("runs"), model=tiny_model, launch={"code_commit": "feedface"})
    samp = SamplingParams(temperature=0.6, top_p=0.95, top_k=20, max_new_tokens=4)
    row, path = evaluate_trained(run, SOKO, rule="last", results_dir="results", out_dir="lb", samples_per_task=2,
                                 episodes=2, max_steps=2, sampling=samp)
    assert path is None  # overrides (a smoke test): no row in results/
    t = row.provenance.training
    assert row.policy == f"hf:results/runs/{run.name}/policy" and row.provenance.policy["model_path"] == f"results/runs/{run.name}/policy"
    assert t.weights_in_repo and t.checkpoint_rule == "last" and t.checkpoint_step == 4 and t.code_commit == "feedface"
    assert row.provenance.checkpoint_rule == "last (step 4)" and row.provenance.evaluated_at
    assert row.episodes == 4 and set(row.pass_at_k) == {1, 2}
    assert row.stability_score == analyze_runs([Path("results") / t.artefacts["metrics"]]).runs[0].stability_score
    assert row.stability_run == f"runs/{run.name}/metrics.jsonl"
    for rel in t.artefacts.values():
        assert (Path("results") / rel).exists()
    assert "/" + str(tmp_path).strip("/") not in row.model_dump_json()  # no absolute path of this machine
    # weights above the size limit stay behind: the row evaluates the checkpoint and says how to regenerate it
    big, _ = evaluate_trained(run, SOKO, rule="step:2", results_dir="results2", out_dir="lb2", episodes=1, max_steps=1,
                              sampling=samp, max_weight_bytes=10)
    assert big.policy == f"hf:runs/{run.name}/checkpoints/step_000002"
    assert not big.provenance.training.weights_in_repo and "policy" not in big.provenance.training.artefacts
    with pytest.raises(ConfigError, match="is not the checkpoint"):
        evaluate_trained(run, SOKO, rule="last", policy=f"hf:{run}/checkpoints/step_000002", results_dir="r3", episodes=1)
    # another run whose folder has the same name is refused, not written over; a name resolves it
    other = _fake_run(Path("elsewhere"), model=tiny_model)
    cfg = json.loads((other / "config.json").read_text())
    cfg["trainer"]["seed"] = 4
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="holds the artefacts of another run"):
        evaluate_trained(other, SOKO, results_dir="results", out_dir="lb", episodes=1, max_steps=1, sampling=samp)
    named, _ = evaluate_trained(other, SOKO, results_dir="results", out_dir="lb", episodes=1, max_steps=1, sampling=samp,
                                run_name="sampo-s4")
    assert named.provenance.training.run_name == "sampo-s4" and named.policy == "hf:results/runs/sampo-s4/policy"
    assert named.provenance.training.seed == 4


# ------------------------------------------------------------------ rendering trained rows


@pytest.mark.slow
def test_trained_row_renders_with_provenance_links_and_stability(tmp_path):
    results, trained = trained_results(tmp_path)
    site = tmp_path / "site"
    rows, notes = render(results, results / "LEADERBOARD.md", site / "leaderboard.html")
    assert len(rows) == 3 and notes == []
    md = (results / "LEADERBOARD.md").read_text()
    t = trained.provenance.training
    line = next(x for x in md.splitlines() if x.startswith("| Sokoban-v0 | hf:"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[8] == f"{trained.stability_score:.1f}" and cells[10] == "last (step 4)"
    links = re.findall(r"\]\(([^)]+)\)", line)
    assert links and all((results / href).exists() for href in links)  # relative to the Markdown file
    assert f"runs/{t.run_name}/metrics.jsonl" in links and f"runs/{t.run_name}/config.json" in links
    random_line = next(x for x in md.splitlines() if x.startswith("| Sokoban-v0 | random"))  # the main table's
    assert [c.strip() for c in random_line.strip("|").split("|")][8] == "–"  # no training run
    assert t.config_digest in md and "seed 3, 4 of 4 RL steps" in md and "0123abcd (of the training run)" in md
    # the HTML page sits elsewhere: its links climb back to results/
    page = (site / "leaderboard.html").read_text()
    hrefs = re.findall(r'class="artefact"[^>]*href="([^"]+)"', page)
    assert hrefs and all((site / h).resolve().exists() for h in hrefs) and all(h.startswith("../results/") for h in hrefs)


@pytest.mark.slow
def test_render_rechecks_trained_rows_against_their_artefacts(tmp_path):
    results, trained = trained_results(tmp_path)
    t = trained.provenance.training
    cfg = results / t.artefacts["config"]
    good = cfg.read_text()
    cfg.write_text(good.replace('"seed": 3', '"seed": 4'))
    with pytest.raises(RowInconsistentError, match="config_digest"):
        render(results, None, None)
    cfg.write_text(good)
    row_file = results / "Sokoban-v0" / "trained.json"
    edited = trained.model_copy(update={"stability_score": (trained.stability_score or 0) + 10})
    row_file.write_text(edited.model_dump_json())
    with pytest.raises(RowInconsistentError, match="stability score"):
        render(results, None, None)
    row_file.write_text(trained.model_dump_json())
    (results / t.artefacts["metrics"]).unlink()
    with pytest.raises(RowInconsistentError, match="metrics artefact .* is missing"):
        render(results, None, None)


def test_policy_env_matrix_average_skips_missing_cells(tmp_path):
    row = evaluate(SOKO, "random", episodes=2, out_dir=tmp_path)

    def at(env: str, policy: str, success: float) -> LeaderboardRow:
        return row.model_copy(update={"env_id": env, "policy": policy, "success": Stat(n=2, mean=success, stderr=0.0)})

    rows = [at("arlarena/A-v0", "p", 0.2), at("arlarena/B-v0", "p", 0.6), at("arlarena/A-v0", "q", 0.9)]
    envs, matrix = env_matrix(rows)
    assert envs == ["arlarena/A-v0", "arlarena/B-v0"]
    assert matrix == [("p", {"arlarena/A-v0": 0.2, "arlarena/B-v0": 0.6}, pytest.approx(0.4), 2),
                      ("q", {"arlarena/A-v0": 0.9}, pytest.approx(0.9), 1)]
    from arlarena_envs.leaderboard.render import MATRIX_NOTE, render_html, render_markdown

    md = render_markdown(rows)
    assert "| q | 0.900 | – | 0.900 | 1/2 |" in md and "| p | 0.200 | 0.600 | 0.400 | 2/2 |" in md
    assert MATRIX_NOTE in md and "not counted as 0" in MATRIX_NOTE
    import html

    page = render_html(rows)
    assert 'class="num missing"' in page and html.escape(MATRIX_NOTE) in page


@pytest.mark.slow
def test_cli_training_run(tiny_model, tmp_path, monkeypatch, capsys):
    from arlarena_envs.cli import main as cli_main

    monkeypatch.chdir(tmp_path)
    run = _fake_run(Path("runs"), model=tiny_model)
    code = cli_main(["leaderboard", "evaluate", "--env", SOKO, "--training-run", str(run), "--checkpoint-rule", "best-eval",
                     "--episodes", "1", "--max-steps", "1", "--out", "lb", "--results", "res", "--quiet"])
    out = capsys.readouterr()
    assert code == 0 and "not copied" in out.err and f"hf:res/runs/{run.name}/policy" in out.out
    row = LeaderboardRow.model_validate_json((Path("lb") / "Sokoban-v0" / f"hf_res_runs_{run.name}_policy" / "row.json").read_text())
    assert row.provenance.training.checkpoint_step == 2 and row.provenance.checkpoint_rule == "best-eval (step 2)"
    assert cli_main(["leaderboard", "evaluate", "--env", SOKO]) != 0
    assert "or --training-run RUN_DIR" in capsys.readouterr().err
