"""The static leaderboard page, rendered in headless Chromium: its JS sorts the table.

Skips when /usr/bin/chromium is absent, unless ARLARENA_REQUIRE_CHROMIUM=1 (CI installs it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from arlarena_envs.leaderboard import Stat, evaluate, render_html

CHROMIUM = os.environ.get("ARLARENA_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def chromium():
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        if os.environ.get("ARLARENA_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"ARLARENA_REQUIRE_CHROMIUM=1 but {CHROMIUM} is missing (apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium); set ARLARENA_REQUIRE_CHROMIUM=1 to fail instead")
    return CHROMIUM


def dump_dom(chromium: str, url: str, profile: Path) -> str:
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--dump-dom", url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("page")
    oracle = evaluate("arlarena/Sokoban-v0", "oracle", episodes=4, out_dir=tmp)
    random = evaluate("arlarena/Sokoban-v0", "random", episodes=4, out_dir=tmp)
    trained = random.model_copy(
        update={"policy": "hf:/ckpt/sampo", "policy_kind": "hf", "success": Stat(n=4, mean=0.5, stderr=0.25), "stability_score": 87.5}
    )
    path = tmp / "leaderboard.html"
    path.write_text(render_html([oracle, random, trained]), encoding="utf-8")
    return path


def _order(dom: str) -> list[str]:
    table = re.search(r'<table id="leaderboard".*?</table>', dom, re.S)
    assert table, dom[:500]
    return re.findall(r'<tr data-env="[^"]*" data-policy="([^"]*)"', table.group(0))


@pytest.mark.parametrize(
    "frag,expected",
    [
        ("", ["oracle", "random", "hf:/ckpt/sampo"]),
        ("#sort=success-desc", ["oracle", "hf:/ckpt/sampo", "random"]),
        ("#sort=success-asc", ["random", "hf:/ckpt/sampo", "oracle"]),
        ("#sort=policy-asc", ["hf:/ckpt/sampo", "oracle", "random"]),
        ("#sort=stability-desc", ["hf:/ckpt/sampo", "oracle", "random"]),  # missing values sort last
    ],
)
def test_page_sorts_in_chromium(chromium, page, tmp_path, frag, expected):
    dom = dump_dom(chromium, page.as_uri() + frag, tmp_path / "profile")
    assert _order(dom) == expected
    if frag:
        key, direction = frag.split("=")[1].rsplit("-", 1)
        assert f'data-sorted-by="{key}-{direction}"' in dom
        want = "descending" if direction == "desc" else "ascending"
        assert re.search(rf'<th data-key="{key}"[^>]*aria-sort="{want}"', dom)
    # the table content survives sorting: the trained agent's stability column
    assert re.search(r'data-policy="hf:/ckpt/sampo">.*?data-key="stability" data-value="87.5"[^>]*>87.5<', dom, re.S)


@pytest.fixture(scope="module")
def trained_page(tmp_path_factory):
    """The page `render` writes for results/ holding random, oracle and a trained row (with its
    run's artefacts under results/runs/)."""
    from trained_run_fixtures import trained_results

    from arlarena_envs.leaderboard import render

    results, trained = trained_results(tmp_path_factory.mktemp("trained"))
    render(results, results / "LEADERBOARD.md", results / "leaderboard.html")
    return results / "leaderboard.html", trained


def test_trained_row_renders_in_chromium(chromium, trained_page, tmp_path):
    page, trained = trained_page
    t = trained.provenance.training
    dom = dump_dom(chromium, page.as_uri() + "#sort=stability-desc", tmp_path / "profile")
    # the trained row sorts first on stability (the others have none) and links its run's artefacts
    assert _order(dom)[0] == trained.policy
    row = re.search(rf'<tr data-env="arlarena/Sokoban-v0" data-policy="{re.escape(trained.policy)}">(.*?)</tr>', dom, re.S)
    assert row, dom[:2000]
    assert re.search(rf'data-key="stability" data-value="{re.escape(repr(trained.stability_score))}"', row.group(1))
    hrefs = dict(re.findall(r'<a class="artefact" data-artefact="([^"]+)" href="([^"]+)"', row.group(1)))
    assert set(hrefs) == set(t.artefacts) and {"config", "metrics", "stability", "policy"} <= set(hrefs)
    for href in hrefs.values():
        assert (page.parent / href).exists(), href
    # the random / oracle rows show no stability and no run
    for pol in ("random", "oracle"):
        other = re.search(rf'<tr data-env="arlarena/Sokoban-v0" data-policy="{pol}">(.*?)</tr>', dom, re.S).group(1)
        assert re.search(r'data-key="stability" data-value=""[^>]*>–<', other) and re.search(r'data-key="run" data-value="">–<', other)
    # the policy x env matrix with its average and the statement of how missing cells count
    matrix = re.search(r'<table id="matrix">(.*?)</table>', dom, re.S).group(1)
    assert ">Average<" in matrix and ">Envs<" in matrix
    assert re.search(rf'<tr data-policy="{re.escape(trained.policy)}">.*?class="num avg"[^>]*>{trained.success.mean:.3f}<', matrix, re.S)
    assert "not counted as 0" in dom
    # pass@k and the provenance block
    assert "pass@1" in row.group(1) and t.config_digest in dom and f"step {t.checkpoint_step}" in dom
    assert "0123abcd (of the training run)" in dom


def test_committed_trained_rows_render_in_chromium(chromium, tmp_path):
    """The committed results/: every trained row shows on the page with its stability score and
    links to artefacts that exist (the page is rendered elsewhere, so its links climb back)."""
    from arlarena_envs.leaderboard import load_rows, render

    results = Path(__file__).resolve().parent.parent / "results"
    trained = [r for r in load_rows(results) if r.provenance.training is not None] if results.is_dir() else []
    if not trained:
        pytest.skip("no trained rows committed under results/")
    page = tmp_path / "site" / "leaderboard.html"
    render(results, None, page)
    dom = dump_dom(chromium, page.as_uri() + "#sort=stability-desc", tmp_path / "profile")
    for r in trained:
        tr = re.search(rf'<tr data-env="{re.escape(r.env_id)}" data-policy="{re.escape(r.policy)}">(.*?)</tr>', dom, re.S)
        assert tr, r.policy
        assert re.search(rf'data-key="stability" data-value="{re.escape(repr(r.stability_score))}"', tr.group(1))
        hrefs = re.findall(r'<a class="artefact" data-artefact="[^"]+" href="([^"]+)"', tr.group(1))
        assert len(hrefs) == len(r.provenance.training.artefacts)
        assert all((page.parent / h).resolve().exists() for h in hrefs), hrefs
        assert r.provenance.training.config_digest in dom
    # sorted on stability, the trained rows (a score, even 0) come before every row without one
    assert set(_order(dom)[: len(trained)]) == {r.policy for r in trained}
