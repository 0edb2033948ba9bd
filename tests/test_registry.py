import subprocess
import sys
import textwrap

import gymnasium as gym
import pytest

import arlarena_envs
from arlarena_envs.errors import EnvNotFoundError, MissingDependencyError, SpecError
from arlarena_envs.registry import get_spec, load_spec_file, load_specs, make


def test_every_spec_registers_under_namespace():
    ids = arlarena_envs.register_all()
    assert "arlarena/Sokoban-v0" in ids
    for i in ids:
        assert i.startswith("arlarena/") and i in gym.registry


def test_make_without_prior_import_in_fresh_interpreter():
    code = textwrap.dedent(
        """
        import gymnasium as gym
        env = gym.make("arlarena_envs:arlarena/Sokoban-v0")
        obs, info = env.reset(seed=0)
        env2 = gym.make("arlarena/Sokoban-v0")   # plain id works once registered
        print(info["state_hash"] == env2.reset(seed=0)[1]["state_hash"])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_unknown_ids_name_what_exists():
    with pytest.raises(EnvNotFoundError, match="Sokoban-v0"):
        get_spec("arlarena/Sokobanz-v0")
    with pytest.raises(EnvNotFoundError, match="needs a version"):
        get_spec("arlarena/Sokoban")
    assert get_spec("Sokoban-v0").id == "arlarena/Sokoban-v0"


def test_bad_kwargs_are_typed_errors():
    with pytest.raises(TypeError, match="unexpected keyword"):
        make("arlarena/Sokoban-v0", colour="red")
    with pytest.raises(ValueError):
        make("arlarena/Sokoban-v0", max_steps=0)
    with pytest.raises(SpecError, match="no split"):
        make("arlarena/Sokoban-v0", split="nope")


def test_spec_file_errors(tmp_path):
    bad = tmp_path / "Toy-v0.yaml"
    bad.write_text("id: arlarena/Toy-v0\nentry_point: x:Y\n")
    with pytest.raises(SpecError, match="invalid spec"):
        load_spec_file(bad)
    wrong = tmp_path / "Other-v0.yaml"
    wrong.write_text(
        "id: arlarena/Toy-v0\nentry_point: x:Y\nprotocol: {template_id: sokoban/v1}\n"
        "splits: {train: {kind: seeds, stop: 3}}\n"
    )
    with pytest.raises(SpecError, match="must be named"):
        load_spec_file(wrong)
    (tmp_path / "Broken-v0.yaml").write_text(":\n - [")
    with pytest.raises(SpecError, match="cannot read"):
        load_spec_file(tmp_path / "Broken-v0.yaml")


def test_extra_registry_path_and_missing_dependency(tmp_path, monkeypatch):
    (tmp_path / "Needy-v0.yaml").write_text(
        "id: arlarena/Needy-v0\nentry_point: arlarena_envs.sokoban:SokobanEnv\n"
        "protocol: {template_id: sokoban/v1}\nsplits: {train: {kind: seeds, stop: 3}}\n"
        "requires: [definitely_not_installed_pkg]\n"
    )
    monkeypatch.setenv("ARLARENA_REGISTRY_PATH", str(tmp_path))
    try:
        assert "arlarena/Needy-v0" in load_specs(refresh=True)
        with pytest.raises(MissingDependencyError, match="pip install"):
            make("arlarena/Needy-v0")
    finally:
        monkeypatch.delenv("ARLARENA_REGISTRY_PATH")
        load_specs(refresh=True)


def test_make_vec_sync_and_async_return_current_observations():
    for mode in ("sync", "async"):
        vec = gym.make_vec("arlarena/Sokoban-v0", num_envs=2, vectorization_mode=mode)
        obs, info = vec.reset(seed=[5, 5])
        assert obs[0] == obs[1]
        seen = [tuple(obs)]
        for a in (["up", "down"], ["left", "right"], ["down", "up"]):
            obs, rew, term, trunc, info = vec.step(a)
            seen.append(tuple(obs))
            assert all(isinstance(o, str) and "\t" in o for o in obs)
        single = gym.make("arlarena/Sokoban-v0").unwrapped
        single.reset(seed=5)
        expected = [single.step(a)[0] for a in ("up", "left", "down")]
        assert [s[0] for s in seen[1:]] == expected, mode
        vec.close()
