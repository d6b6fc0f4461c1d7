"""`eval_guidance`: bad settings are one-line errors before any folder is made; at the tiniest
sizes (an untrained 1-block CDOSGen, a random composition guide) every arm runs end to end and the
tables carry each rate with its interval and n."""

import json

import numpy as np
import pytest

from experiments import eval_guidance
from jaxdos.sampler.checkpoint import DEFAULT_DIR as SAMPLER_DIR


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--crystals", "0"], "--crystals: expected >= 1"),
        (["--steps", "1"], "--steps: expected >= 2"),
        (["--band-gap", "-1"], "--band-gap: expected a finite value > 0"),
        (["--guide-strength", "nan"], "--guide-strength: expected a finite value > 0"),
        (["--tcm-type", "3"], "--tcm-type: invalid choice"),
        (["--tcm-arms", "cfg", "cfg+guide"], "--tcm-arms: expected names from unconditional, cfg"),
        (["--band-gap-arms", "guide_tcm"], "--band-gap-arms: expected names from unconditional"),
        (["--guide-predictor", str(SAMPLER_DIR)], "--guide-predictor: "),
    ],
)
def test_bad_settings_are_one_line_errors(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        eval_guidance.main([*argv, "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and sum("error:" in line for line in err) == 1, err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # ten tiny CDOSGen arms, eight compiles (~7 min on 2 busy cores)
def test_every_arm_runs_and_is_reported_with_its_interval(tmp_path, capsys):
    from pipeline.test_guided import sharp_predictor
    from pipeline.untrained import untrained_model

    untrained_model(8, np.array([2, 3])).save(tmp_path / "cdosgen")
    sharp_predictor().save(tmp_path / "guide")
    out = tmp_path / "run"
    argv = ["--quick", "--crystals", "2", "--steps", "2", "--crystal-batch", "2"]
    argv += ["--crystal-model", str(tmp_path / "cdosgen"), "--guide-predictor"]
    argv += [str(tmp_path / "guide"), "--out", str(out)]
    eval_guidance.main(argv)
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["tcm"]) == [
        "unconditional", "cfg", "guide_tcm", "guide_dos", "cfg+guide_tcm", "cfg+guide_dos",
    ]  # fmt: skip
    assert list(summary["band_gap"]) == ["unconditional", "cfg", "guide_window", "cfg+guide_window"]
    for arm in summary["tcm"].values():
        assert arm["crystals"] == 2 and arm["tcm_yield_ci"]["n"] == 2
        assert 0 <= arm["tcm_yield_ci"]["lo"] <= arm["tcm_yield_ci"]["hi"] <= 1
    assert summary["band_gap_window"] == pytest.approx([1.8, 2.2])
    assert "(n=2)" in printed and "TCM yield" in printed and "E_BG MAE" in printed
    assert {"tcm.md", "band_gap.md", "run.json"} <= {p.name for p in out.iterdir()}
    # A resumed run reads every arm back from its chunks: the same summary.
    eval_guidance.main([*argv, "--resume"])
    assert json.loads((out / "summary.json").read_text()) == summary


def test_a_subset_of_arms_runs_only_those_and_the_baseline(tmp_path):
    from pipeline.untrained import untrained_model

    untrained_model(8, np.array([2, 3])).save(tmp_path / "cdosgen")
    out = tmp_path / "run"
    argv = ["--quick", "--crystals", "2", "--steps", "2", "--crystal-batch", "2"]
    argv += ["--crystal-model", str(tmp_path / "cdosgen"), "--out", str(out)]
    eval_guidance.main([*argv, "--tcm-arms", "cfg", "--band-gap-arms"])
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["tcm"]) == ["unconditional", "cfg"]
    assert list(summary["band_gap"]) == ["unconditional"]
    assert sorted(p.name for p in (out / "stages").iterdir()) == ["tcm_cfg", "tcm_unconditional"]
