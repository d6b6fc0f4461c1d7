"""The predictor commands: a bad flag is a one-line usage error naming it, before any compute,
and nothing is written; both are `jaxdos` subcommands."""

import pytest

from experiments import eval_predictor, main, train_predictor


def _usage_error(capsys, run, argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        run(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "flags, flag",
    [
        (["--steps", "0"], "--steps: expected >= 1"),
        (["--records", "missing.npz"], "--records: missing.npz is not a file"),
        (["--batch-crystals", "0"], "--batch-crystals: expected >= 1"),
        (["--lr", "2"], "--lr: expected in (0, 1)"),
    ],
)
def test_train_predictor_flags(capsys, tmp_path, flags, flag):
    out = tmp_path / "run"
    line = _usage_error(capsys, train_predictor.main, ["--out", str(out), *flags])
    assert flag in line and not out.exists()


def test_train_predictor_keeps_an_existing_run(capsys, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    line = _usage_error(capsys, train_predictor.main, ["--out", str(tmp_path), "--steps", "1"])
    assert "--out:" in line and "--resume" in line
    assert list(tmp_path.iterdir()) == [tmp_path / "checkpoints"]


def test_eval_predictor_flags(capsys, tmp_path):
    out = tmp_path / "eval"
    line = _usage_error(capsys, eval_predictor.main, ["--model", str(tmp_path), "--out", str(out)])
    assert "--model:" in line and "is not a model directory" in line
    (tmp_path / "model.json").write_text("{}")
    argv = ["--model", str(tmp_path), "--out", str(out), "--throughput", "0"]
    assert "--throughput: expected >= 1" in _usage_error(capsys, eval_predictor.main, argv)
    assert not out.exists()


def test_subcommands():
    assert main.COMMANDS["train-predictor"] == "train_predictor"
    assert main.COMMANDS["eval-predictor"] == "eval_predictor"
