import io
import subprocess
import sys

from arlarena_envs.cli import main
from arlarena_envs.play import play


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "arlarena_envs.cli", *args], capture_output=True, text=True, timeout=120)


def test_list_and_help(capsys):
    assert main(["list"]) == 0
    assert "arlarena/Sokoban-v0" in capsys.readouterr().out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("list", "play", "check", "train", "stability", "leaderboard", "demo"):
        assert cmd in out
    assert main([]) == 2


def test_unknown_command_is_usage_error():
    r = run_cli("frobnicate")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_schema_command(tmp_path):
    r = run_cli("schema", str(tmp_path))
    assert r.returncode == 0 and (tmp_path / "EnvSpec.schema.json").exists()


def test_play_session_scripted():
    out = io.StringIO()
    keys = "\n".join([":oracle"] * 40 + [":quit"]) + "\n"
    total = play("arlarena/Sokoban-v0", seed=3, stdin=io.StringIO(keys), out=out)
    text = out.getvalue()
    assert "episode solved" in text and total > 9
    assert "episode over: :reset" in text  # oracle keys after the end are refused politely


def test_play_via_terminal_command():
    r = subprocess.run(
        [sys.executable, "-m", "arlarena_envs.cli", "play", "Sokoban-v0", "--seed", "1"],
        input="up\nfly\n:prompt\n:quit\n", capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "status inadmissible" in r.stdout and "admissible actions" in r.stdout
