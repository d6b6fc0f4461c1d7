"""--scorer on the crystal commands: a folder that is no dos_predictor is a one-line usage error
naming the flag, before any folder is made; 'oracle' and a predictor directory are accepted."""

import jax
import pytest

from experiments import generate
from jaxdos.pipeline.screening import CrystalSettings
from jaxdos.predictor.checkpoint import DOSPredictorModel
from jaxdos.predictor.config import CompositionConfig
from jaxdos.predictor.model import init_params
from jaxdos.sampler.checkpoint import DEFAULT_DIR as SAMPLER_DIR


def test_wrong_kind_scorer_is_a_usage_error(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        generate.main([str(tmp_path), "--scorer", str(SAMPLER_DIR), "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--scorer:" in err and "dos_predictor" in err
    assert not out.exists()


def test_scorer_model_is_loaded_by_kind(tmp_path):
    assert CrystalSettings().scorer_model() is None
    assert CrystalSettings(scorer="oracle").scorer_model() is None
    cfg = CompositionConfig.tiny()
    DOSPredictorModel(params=init_params(jax.random.key(0), cfg), config=cfg).save(tmp_path / "p")
    model = CrystalSettings(scorer=str(tmp_path / "p")).scorer_model()
    assert isinstance(model, DOSPredictorModel) and model.config == cfg
    with pytest.raises(ValueError, match="^scorer: "):
        CrystalSettings(scorer=str(tmp_path / "missing")).check_crystal_model()
