"""Exported model files: save/load round trip, base -> conditional param merge, default model."""

import numpy as np
import pytest

from jaxdos.crystal.checkpoint import (
    DEFAULT_DIR,
    load_default,
    load_model,
    merge_base_params,
    save_model,
)
from jaxdos.crystal.denoiser import GemNetConfig
from jaxdos.crystal.diffusion.num_atoms import NumAtomsDistribution


def test_save_load_round_trip(tmp_path):
    params = {"params": {"fc_atom": {"kernel": np.arange(6.0).reshape(2, 3), "bias": np.ones(3)}}}
    cfg = GemNetConfig.tiny().conditional()
    dist = NumAtomsDistribution.from_counts([1, 2, 2, 4])
    save_model(tmp_path, params, cfg, dist, {"val_metrics": {"loss": 1.5}})
    p2, cfg2, dist2, meta = load_model(tmp_path)
    assert cfg2 == cfg and dist2 == dist and meta["val_metrics"]["loss"] == 1.5
    np.testing.assert_array_equal(
        p2["params"]["fc_atom"]["kernel"], params["params"]["fc_atom"]["kernel"]
    )


def test_merge_base_params_keeps_adapters_and_checks_shapes():
    cond = {
        "params": {
            "fc_atom": {"kernel": np.zeros((2, 3))},
            "cond_mixin_layers_dos_0": {"kernel": np.ones(2)},
        }
    }
    base = {"params": {"fc_atom": {"kernel": np.full((2, 3), 7.0)}}}
    merged = merge_base_params(cond, base)
    assert np.all(merged["params"]["fc_atom"]["kernel"] == 7.0)
    assert np.all(merged["params"]["cond_mixin_layers_dos_0"]["kernel"] == 1.0)
    with pytest.raises(ValueError, match="shape"):
        merge_base_params(cond, {"params": {"fc_atom": {"kernel": np.zeros((3, 3))}}})


@pytest.mark.skipif(not (DEFAULT_DIR / "params.msgpack").exists(), reason="default not trained yet")
def test_load_default():
    params, cfg, dist = load_default()
    assert cfg.dos_dim == 256 and dist.max_atoms <= 20
    leaves = [np.asarray(x) for x in __import__("jax").tree.leaves(params)]
    assert all(np.all(np.isfinite(x)) for x in leaves) and sum(x.size for x in leaves) > 10_000
