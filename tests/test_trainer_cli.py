"""`arlarena train` wiring (the lead's cli.py imports arlarena_baselines.cli lazily)."""

from __future__ import annotations

import json

from arlarena_envs.cli import main


def test_train_list_and_print_config(capsys):
    assert main(["train", "--list"]) == 0
    names = capsys.readouterr().out.split()
    assert "sampo" in names and "demo_cpu" in names
    assert main(["train", "--config", "sampo", "--set", "trainer.total_steps=7", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["trainer"]["total_steps"] == 7 and cfg["algorithm"]["loss_mode"] == "gspo"


def test_train_bad_config_is_a_clean_error(capsys):
    assert main(["train", "--config", "sampo", "--set", "algorithm.loss_mode=bogus"]) == 1
    assert "loss_mode" in capsys.readouterr().err
