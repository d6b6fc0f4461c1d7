"""The predictor in the one model format: round trip, kind checks, the missing default, and
`predict_dos`'s shapes and errors."""

import jax
import numpy as np
import pytest

from jaxdos import modeldir
from jaxdos.pipeline import models
from jaxdos.predictor import DOSPredictorModel, checkpoint, predict_dos
from jaxdos.predictor.config import EquivariantConfig
from tests.predictor.conftest import random_crystals

CRYSTALS = random_crystals(0, m=3, a=4)


@pytest.mark.parametrize("which", ["tiny_model", "composition_model"])
def test_round_trip(which, request, tmp_path):
    model = request.getfixturevalue(which)
    model = DOSPredictorModel(params=model.params, config=model.config, meta={"note": "x"})
    model.save(tmp_path)
    back = models.load(tmp_path)  # the pipeline's one loader dispatches on the kind
    assert isinstance(back, DOSPredictorModel) and back.config == model.config
    assert back.meta == {"note": "x"} and modeldir.read_kind(tmp_path) == "dos_predictor"
    for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(back.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(
        predict_dos(CRYSTALS, back, batch_size=4), predict_dos(CRYSTALS, model, batch_size=4)
    )
    assert models.as_model(str(tmp_path), "dos_predictor").config == model.config


def test_wrong_kind_and_architecture(tiny_model, tmp_path):
    modeldir.save(tmp_path / "other", "cdosgen", {}, {"w": np.zeros(1)})
    with pytest.raises(ValueError, match="a 'cdosgen' model, expected a 'dos_predictor'"):
        DOSPredictorModel.load(tmp_path / "other")
    modeldir.save(tmp_path / "arch", "dos_predictor", {"architecture": "x", "model": {}}, {})
    with pytest.raises(ValueError, match="unknown predictor architecture 'x'"):
        DOSPredictorModel.load(tmp_path / "arch")
    with pytest.raises(ValueError, match="config: expected an EquivariantConfig"):
        DOSPredictorModel(params={}, config="equivariant")


def test_no_default_shipped_says_how_to_train(monkeypatch, tmp_path):
    monkeypatch.setattr(checkpoint, "DEFAULT_DIR", tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="no default DOS predictor here.*make "):
        predict_dos(CRYSTALS)


def test_predict_dos_shapes(composition_model):
    out = predict_dos(CRYSTALS, composition_model, batch_size=2)  # 2 chunks, the last padded
    assert out.shape == (3, 256) and out.dtype == np.float32 and np.all(out >= 0)
    np.testing.assert_array_equal(out, predict_dos(CRYSTALS, composition_model, batch_size=2))
    assert predict_dos(CRYSTALS.take(np.arange(0)), composition_model).shape == (0, 256)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(num_atoms=np.array([0, 2, 2], np.int32)), r"crystals\.num_atoms: expected values"),
        (dict(num_atoms=np.array([2, 2], np.int32)), r"crystals\.num_atoms: expected shape"),
        (dict(lattice=np.zeros((3, 3), np.float32)), r"crystals\.lattice: expected shape"),
        (dict(atomic_numbers=np.zeros((3, 4), np.int32)), r"crystals\.atomic_numbers: expected"),
    ],
)
def test_predict_dos_errors(composition_model, change, match):
    with pytest.raises(ValueError, match=match):
        predict_dos(CRYSTALS._replace(**change), composition_model)


def test_predict_dos_bad_arguments(composition_model):
    with pytest.raises(ValueError, match="batch_size: expected >= 1"):
        predict_dos(CRYSTALS, composition_model, batch_size=0)
    with pytest.raises(ValueError, match="model: expected None, a DOSPredictorModel"):
        predict_dos(CRYSTALS, model=EquivariantConfig())
    with pytest.raises(ValueError, match="crystals: expected jaxdos.structures.Crystals"):
        predict_dos(tuple(CRYSTALS), composition_model)
    with pytest.raises(FileNotFoundError, match="model.json: not found"):
        predict_dos(CRYSTALS, "/nonexistent/predictor")
