"""Exporter without torch: jaxdos params -> MatterGen state_dict -> converter = the same params.

Run on the embedded trained CDOSGen (`jaxdos/assets/crystal_tiny`, a DOS model; its base network
is exported) and on the same model with a scalar adapter grafted on (random adapter weights), so
the scaler and the `cond_adapt_layers.<p>.<i>.<j>` names are inverted too.
"""

import dataclasses

import jax
import numpy as np
import pytest
from flax import traverse_util

from jaxdos.crystal.checkpoint import load_default
from jaxdos.crystal.convert import (
    Checkpoint,
    ConversionError,
    convert_checkpoint,
    export_state_dict,
    on_mattergen_clock,
    param_template,
)
from jaxdos.crystal.gemnet import ScalarProperty


def _flat(params):
    return traverse_util.flatten_dict(params["params"], sep="/")


def _round_trip(model, **kw):
    config, sd = export_state_dict(model, **kw)
    params, gemnet, diffusion, _ = convert_checkpoint(config, Checkpoint(sd, {}, None, "memory"))
    return sd, params, gemnet, diffusion


def _assert_bit_identical(got: dict, want: dict):
    assert sorted(got) == sorted(want)
    for path in want:
        a, b = np.asarray(got[path]), np.asarray(want[path])
        assert a.dtype == b.dtype and a.shape == b.shape, path
        np.testing.assert_array_equal(a, b, err_msg=path)


@pytest.fixture(scope="module")
def default():
    # The round trips test the network; a default trained on a warped cell clock (which export
    # refuses, test_export_is_strict) is exported on MatterGen's.
    return on_mattergen_clock(load_default())


def test_default_model_round_trip_is_bit_identical(default):
    sd, params, gemnet, diffusion = _round_trip(default, unconditional=True)
    base = {p: v for p, v in _flat(default.params).items() if "_dos_" not in p}
    assert len(base) < len(_flat(default.params))  # the DOS adapter was there and is dropped
    _assert_bit_identical(_flat(params), base)
    want = dataclasses.replace(default.gemnet, dos_dim=None, dos_emb_size=512, graph=gemnet.graph,
                               scale_factors=gemnet.scale_factors)  # fmt: skip
    assert gemnet == want
    assert gemnet.graph.cutoff == default.gemnet.graph.cutoff
    assert gemnet.graph.max_neighbors == default.gemnet.graph.max_neighbors
    assert all(v == 1.0 for _, v in gemnet.scale_factors)  # absent = 1.0 in jaxdos
    assert diffusion == default.diffusion
    # Torch layout: a Linear weight is [out, in].
    np.testing.assert_array_equal(sd["fc_atom.weight"], np.asarray(base["fc_atom/kernel"]).T)
    assert sd["gemnet.int_blocks.1.dense_ca.linear.weight"].shape == (64, 64)


def test_scalar_adapter_round_trip(default):
    prop = ScalarProperty(name="dft_band_gap", mean=1.25, std=0.5)
    gemnet = dataclasses.replace(default.gemnet, dos_dim=None, properties=(prop,))
    template = param_template(gemnet)
    keys = iter(jax.random.split(jax.random.key(3), len(template)))
    old = _flat(default.params)
    flat = {p: old[p] if p in old else jax.random.normal(next(keys), s.shape, s.dtype)
            for p, s in template.items()}  # fmt: skip
    model = dataclasses.replace(
        default, gemnet=gemnet, params={"params": traverse_util.unflatten_dict(flat, sep="/")}
    )
    sd, params, back, _ = _round_trip(model)
    assert "gemnet.cond_adapt_layers.dft_band_gap.1.2.weight" in sd
    assert "gemnet.cond_mixin_layers.dft_band_gap.0.weight" in sd
    assert sd["property_embeddings_adapt.dft_band_gap.scaler.stds"].tolist() == [0.5]
    _assert_bit_identical(_flat(params), {p: np.asarray(v) for p, v in flat.items()})
    assert back.properties == (prop,)


def test_export_is_strict(default):
    with pytest.raises(ConversionError, match=r"DOS adapter.*unconditional=True"):
        export_state_dict(default)
    flat = dict(_flat(default.params))
    flat["gemnet/fc_extra/kernel"] = np.zeros((2, 2), np.float32)
    flat["fc_atom/kernel"] = np.zeros((3, 3), np.float32)
    del flat["gemnet/int_blocks_0/dense_ca/linear/kernel"]
    bad = dataclasses.replace(
        default, params={"params": traverse_util.unflatten_dict(flat, sep="/")}
    )
    with pytest.raises(ConversionError) as e:
        export_state_dict(bad, unconditional=True)
    msg = str(e.value)
    assert "'gemnet/fc_extra/kernel' is not in the model's template" in msg
    assert "missing param 'gemnet/int_blocks_0/dense_ca/linear/kernel'" in msg
    assert "'fc_atom/kernel' has shape (3, 3)" in msg
    odd = dataclasses.replace(
        default, gemnet=dataclasses.replace(default.gemnet, time_scale=1e3, frac_head=2)
    )
    with pytest.raises(ConversionError, match=r"time_scale=1000.0.*frac_head=2 \(MatterGen: 0\)"):
        export_state_dict(odd, unconditional=True)
    cell = dataclasses.replace(default.diffusion.cell, time_power=3.0)
    warped = dataclasses.replace(
        default, diffusion=dataclasses.replace(default.diffusion, cell=cell)
    )
    with pytest.raises(ConversionError, match=r"time_power=3.0 has no MatterGen equivalent"):
        export_state_dict(warped, unconditional=True)
