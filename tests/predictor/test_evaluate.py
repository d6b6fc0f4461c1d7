"""Table 7 metrics against an independent numpy / scipy reference on a tiny case, the eval job
end to end, and scoring by predictor."""

import json

import numpy as np
import pytest
import scipy.stats

from jaxdos.kernels.grid import bin_centres
from jaxdos.kernels.properties import measure
from jaxdos.pipeline import score
from jaxdos.pipeline.score import scorer_name
from jaxdos.predictor import predict_dos
from jaxdos.predictor.evaluate import ROWS, per_crystal, table7
from tests.predictor.conftest import random_crystals


def _spectra(seed, m=5):
    rng = np.random.default_rng(seed)
    return np.abs(rng.normal(size=(m, 256))).astype(np.float32) * (rng.random((m, 1)) + 0.1)


def test_metrics_against_numpy():
    pred, true = _spectra(0), _spectra(1)
    got = per_crystal(pred, true)
    assert set(got) == set(ROWS)
    p, t = pred.astype(np.float64), true.astype(np.float64)
    e = bin_centres()
    for i in range(len(p)):
        np.testing.assert_allclose(got["mae"][i], np.abs(p[i] - t[i]).mean(), rtol=1e-6)
        np.testing.assert_allclose(got["mse"][i], ((p[i] - t[i]) ** 2).mean(), rtol=1e-5)
        r2 = 1 - ((p[i] - t[i]) ** 2).sum() / ((t[i] - t[i].mean()) ** 2).sum()
        np.testing.assert_allclose(got["r2"][i], r2, rtol=1e-6)
        w1 = scipy.stats.wasserstein_distance(e, e, p[i], t[i])
        np.testing.assert_allclose(got["wasserstein"][i], w1, rtol=1e-4)
        cos = p[i] @ t[i] / np.linalg.norm(p[i]) / np.linalg.norm(t[i])
        np.testing.assert_allclose(got["cosine"][i], cos, rtol=1e-5)
    mp, mt = measure(pred), measure(true)
    np.testing.assert_allclose(got["band_gap_mae"], np.abs(mp["band_gap"] - mt["band_gap"]))
    # A perfect prediction: zero errors, R^2 = 1, cosine 1; a constant reference gives NaN R^2.
    same = per_crystal(true, true)
    assert (
        np.all(same["mae"] == 0) and np.allclose(same["r2"], 1) and np.allclose(same["cosine"], 1)
    )
    flat = np.ones((2, 256), np.float32)
    assert np.all(np.isnan(per_crystal(_spectra(2, 2), flat)["r2"]))
    table = table7(pred, true)
    assert table["mae"].value == pytest.approx(got["mae"].mean()) and table["mae"].n == 5
    assert table["mae"].lo <= table["mae"].value <= table["mae"].hi


def test_metric_shape_errors():
    with pytest.raises(ValueError, match="pred: expected the shape of true"):
        per_crystal(_spectra(0, 3), _spectra(1, 4))
    with pytest.raises(ValueError, match="true"):
        per_crystal(_spectra(0, 3), np.zeros((3, 255)))


def test_score_by_predictor(composition_model, tmp_path):
    crystals = random_crystals(3, m=3, a=4)
    composition_model.save(tmp_path / "p")
    for scorer in (composition_model, tmp_path / "p", str(tmp_path / "p")):
        s = score(crystals, scorer=scorer)
        assert s.scorer.startswith("predictor:") and np.all(np.isnan(s.efermi[s.valid]))
        np.testing.assert_array_equal(
            s.dos[s.valid], predict_dos(crystals.take(np.flatnonzero(s.valid)), composition_model)
        )
        np.testing.assert_allclose(
            s.properties["band_gap"][s.valid], measure(s.dos[s.valid])["band_gap"]
        )
    assert scorer_name(None) == scorer_name("oracle") == "oracle"
    with pytest.raises(ValueError, match="model: expected None, a DOSPredictorModel"):
        score(crystals, scorer=3)


@pytest.mark.slow  # the oracle's compile for the throughput line
def test_eval_job(composition_model, tmp_path):
    from jaxdos.pipeline.jobs.eval_predictor import EvalPredictorConfig, run

    composition_model.save(tmp_path / "m")
    cfg = EvalPredictorConfig(
        model=str(tmp_path / "m"), baseline=str(tmp_path / "m"), max_crystals=6, throughput=2
    )
    report = run(cfg, tmp_path / "out", log=lambda s: None)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["n"] == 6 and summary["oracle_crystals_per_s"] > 0
    # the same model in both columns: the same numbers
    assert summary["predictor"]["mae"] == summary["composition baseline"]["mae"]
    assert "| mae |" in report and "crystals/s" in report


def test_eval_config_errors(tmp_path):
    from jaxdos.pipeline.jobs.eval_predictor import EvalPredictorConfig

    with pytest.raises(ValueError, match="model: .* is not a model directory"):
        EvalPredictorConfig(model=str(tmp_path))
    with pytest.raises(ValueError, match="throughput: expected >= 1"):
        (tmp_path / "model.json").write_text("{}")
        EvalPredictorConfig(model=str(tmp_path), throughput=0)
