"""The installed `jaxdos` command dispatches to the experiments' `main(argv)`."""

import importlib

import pytest

from experiments import main as entry


@pytest.mark.parametrize("name, module", sorted(entry.COMMANDS.items()))
def test_every_subcommand_is_a_command_with_help(name, module, capsys):
    assert callable(importlib.import_module(f"experiments.{module}").main)
    with pytest.raises(SystemExit) as exc:
        entry.main([name, "--help"])
    assert exc.value.code == 0
    assert f"jaxdos {name}" in capsys.readouterr().out  # argparse names the subcommand


def test_bad_flag_is_the_jobs_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        entry.main(["tcm-screen", "--accept", "0", "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    assert "--accept: expected >= 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_unknown_or_missing_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        entry.main(["tcm_screen"])
    assert exc.value.code == 2
    assert "unknown subcommand 'tcm_screen'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        entry.main([])
    assert exc.value.code == 2 and "usage: jaxdos" in capsys.readouterr().out


def test_a_jobs_failing_exit_status_is_the_commands(tmp_path, capsys):
    """load-mp returns 2 for a missing source: `jaxdos load-mp` must exit 2, not 0."""
    with pytest.raises(SystemExit) as exc:
        entry.main(["load-mp", str(tmp_path / "missing"), str(tmp_path / "out.npz")])
    assert exc.value.code == 2
    assert not (tmp_path / "out.npz").exists()
