"""Predictor-guidance flags of the crystal commands: the property windows and --guide-tcm reach
`predictor_property_guidance`, and bad ones are one-line usage errors naming the flag, before any
folder is made."""

import numpy as np
import pytest

from experiments import design, generate, tcm_screen
from jaxdos.crystal.diffusion.guidance import ClassifierFree
from jaxdos.data.records import save_records
from jaxdos.data.world import load_world
from jaxdos.pipeline import crystals as crystals_module
from tests.pipeline.test_guided import sharp_predictor


class _Reached(Exception):
    """Raised by the spy once the guidance is built: nothing is sampled."""


def test_window_flags_reach_the_property_guidance(tmp_path, monkeypatch):
    save_records(tmp_path / "r.npz", load_world("test").take(np.arange(1)), oracle_version="x")
    sharp_predictor().save(tmp_path / "guide")
    seen = {}

    def spy(model, windows, num_crystals, *, strength, base, **kw):
        seen.update(windows=windows, n=num_crystals, strength=strength, base=base, **kw)
        raise _Reached

    monkeypatch.setattr(crystals_module, "predictor_property_guidance", spy)
    argv = [str(tmp_path / "r.npz"), "--guide-predictor", str(tmp_path / "guide")]
    argv += ["--guide-band-gap", "1.5", "2.5", "--guide-dos-at-fermi", "0", "0.1"]
    argv += ["--guide-tcm", "2"]
    argv += ["--guide-strength", "3", "--crystals-per-dos", "2", "--out", str(tmp_path / "run")]
    with pytest.raises(_Reached):
        generate.main(argv)
    assert seen["windows"] == {"band_gap": (1.5, 2.5), "dos_at_fermi": (0.0, 0.1)}
    assert seen["n"] == 2 and seen["strength"] == 3.0 and seen["tcm"] == 2
    assert seen["base"] == ClassifierFree(cfg_scale=2.0)


@pytest.mark.parametrize("module", [design, generate, tcm_screen])
def test_every_crystal_command_takes_the_window_flags(module, tmp_path, monkeypatch):
    seen = {}

    def fake_run(cfg, out, **kw):
        seen["cfg"] = cfg
        raise _Reached

    monkeypatch.setattr(module, "run", fake_run)
    argv = ["--guide-predictor", "p", "--guide-integrated-dos", "1", "2", "--guide-tcm", "1"]
    argv += {design: ["--band-gap", "2"], generate: [str(tmp_path)]}.get(module, [])
    with pytest.raises(_Reached):
        module.main([*argv, "--out", str(tmp_path / "run")])
    assert seen["cfg"].guide_windows() == {"integrated_dos": (1.0, 2.0)}
    assert seen["cfg"].guide_tcm == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--guide-band-gap", "3", "1", "--guide-predictor", "p"], "--guide-band-gap: expected"),
        (["--guide-dos-at-fermi", "nan", "1", "--guide-predictor", "p"], "--guide-dos-at-fermi:"),
        (["--guide-integrated-dos", "1", "2"], "--guide-integrated-dos: needs guide_predictor"),
        (["--guide-band-gap", "1"], "--guide-band-gap: expected 2 arguments"),
        (["--guide-tcm", "1"], "--guide-tcm: needs guide_predictor"),
        (["--guide-tcm", "3", "--guide-predictor", "p"], "--guide-tcm: invalid choice"),
    ],
)
def test_bad_windows_are_one_line_errors(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        generate.main([str(tmp_path), *argv, "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and sum("error:" in line for line in err) == 1, err
    assert not (tmp_path / "run").exists()
