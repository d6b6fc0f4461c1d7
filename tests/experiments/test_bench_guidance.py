"""bench_guidance rejects bad settings before any model is loaded or compiled (its timed run is a
benchmark, smoke-checked by hand with --quick)."""

import pytest

from experiments import bench_guidance


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "1"], "--steps: expected >= 2"),
        (["--rounds", "0"], "--rounds: expected >= 1"),
        (["--t-max", "0"], "--t-max: expected in (0, 1]"),
        (["--batch", "4", "0"], "--batch: expected sizes >= 1"),
        (["--loss", "gap"], "--loss: invalid choice"),
    ],
)
def test_bad_settings_exit_before_any_work(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_guidance.main([*argv, "--out", str(tmp_path / "b.json")])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()
