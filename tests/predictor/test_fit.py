"""Predictor training on the core: the loss falls on a tiny synthetic set, resume is exact (and
keeps grown neighbour-list budgets), the export loads back."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from jaxdos.data.budgets import CrystalBudgets
from jaxdos.predictor import CompositionConfig, DOSPredictorModel, predict_dos
from jaxdos.predictor.fit import PredictorFitConfig, fit_predictor, predictor_train_config
from tests.predictor.conftest import TINY, random_crystals, synthetic_records

RECORDS = synthetic_records(random_crystals(7, m=12, a=4))
BUDGETS = CrystalBudgets(atoms=48, graphs=13)  # the whole set in every batch


def _job(model, steps, **train):
    train = predictor_train_config(
        steps=steps, learning_rate=1e-2, warmup=0, ckpt_every=3, log_every=1, **train
    )
    return PredictorFitConfig(model=model, train=train, budgets=BUDGETS)


def _same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _log(d):
    return [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]


def test_loss_decreases_and_export_loads(tmp_path):
    job = _job(CompositionConfig.tiny(), 40)
    result = fit_predictor(job, RECORDS, RECORDS.take(np.arange(4)), tmp_path, log=None)
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < 0.5 * losses[0]
    model = DOSPredictorModel.load(result.export)
    assert model.config == job.model and model.meta["train_records"] == len(RECORDS)
    pred = predict_dos(RECORDS.crystals, model)
    # The export is the EMA; its loss is well below the first step's.
    assert np.mean((pred - RECORDS.dos) ** 2) < 0.5 * losses[0]


def _resume_is_exact(tmp_path, model):
    job = _job(model, 6)
    straight = fit_predictor(job, RECORDS, None, tmp_path / "a", log=None)
    half = fit_predictor(job, RECORDS, None, tmp_path / "b", stop_after=3, log=None)
    assert half.export is None
    resumed = fit_predictor(job, RECORDS, None, tmp_path / "b", resume=True, log=None)
    _same(straight.state, resumed.state)
    assert _log(tmp_path / "a") == _log(tmp_path / "b")
    a, b = DOSPredictorModel.load(straight.export), DOSPredictorModel.load(resumed.export)
    assert a.config == b.config
    _same(a.params, b.params)
    return a


def test_resume_is_exact(tmp_path):
    _resume_is_exact(tmp_path, CompositionConfig.tiny())


@pytest.mark.slow  # two compiles of the equivariant step (the overflowing and the grown budgets)
def test_equivariant_resume_keeps_grown_budgets(tmp_path):
    tight = dataclasses.replace(TINY, graph=dataclasses.replace(TINY.graph, edges_per_atom=2))
    model = _resume_is_exact(tmp_path, tight)
    assert model.config.graph.edges_per_atom > 2  # grown, exported, and restored on resume
    rows = _log(tmp_path / "a")
    assert rows[-1]["loss"] < rows[0]["loss"]
