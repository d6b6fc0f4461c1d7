"""CDOSGen model directories: round trip, base -> conditional param merge, the default model."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxdos.crystal.checkpoint import (
    CDOSGenModel,
    load_default,
    merge_base_params,
    save_model,
)
from jaxdos.crystal.denoiser import GemNetConfig, GemNetTDenoiser
from jaxdos.crystal.diffusion import D3PMConfig, DiffusionConfig, WrappedNormalConfig
from jaxdos.crystal.diffusion.num_atoms import NumAtomsDistribution
from jaxdos.crystal.gemnet.config import ScalarProperty
from jaxdos.crystal.gemnet.scaling import GEMNET_DT_JSON, scales_from_json

PARAMS = {"params": {"fc_atom": {"kernel": np.arange(6.0).reshape(2, 3), "bias": np.ones(3)}}}


def test_save_load_round_trip(tmp_path):
    cfg = GemNetConfig.tiny().conditional()
    dist = NumAtomsDistribution.from_counts([1, 2, 2, 4])
    diffusion = DiffusionConfig(types=D3PMConfig(hybrid_coeff=0.5))
    save_model(tmp_path, PARAMS, cfg, dist, {"val_metrics": {"loss": 1.5}}, diffusion=diffusion)
    m = CDOSGenModel.load(tmp_path)
    assert m.gemnet == cfg and m.num_atoms == dist and m.diffusion == diffusion
    assert m.meta["val_metrics"]["loss"] == 1.5
    np.testing.assert_array_equal(
        m.params["params"]["fc_atom"]["kernel"], PARAMS["params"]["fc_atom"]["kernel"]
    )
    assert isinstance(m.denoiser, GemNetTDenoiser) and m.denoiser.config == cfg
    assert m.denoiser is m.denoiser  # built once per model object
    # save_model without a diffusion config records the default one.
    save_model(tmp_path / "d", PARAMS, cfg, dist)
    assert CDOSGenModel.load(tmp_path / "d").diffusion == DiffusionConfig()


def test_every_config_field_round_trips_exactly(tmp_path):
    # Non-default values in every nested config: the graph, scale factors, scalar properties,
    # optional fields, and floats that JSON must not round.
    cfg = GemNetConfig.mattergen_base(
        scale_factors=scales_from_json(GEMNET_DT_JSON, 4),
        properties=(ScalarProperty(name="dft_band_gap", mean=1.0 / 3.0, std=0.7, log10=True),),
        pos_sigma_ref=0.123456789,
        time_scale=1000.0,
    ).conditional(dos_emb_size=32)
    diffusion = DiffusionConfig(pos=WrappedNormalConfig(sigma_max=4.5, num_images=2), t_min=1e-4)
    dist = NumAtomsDistribution(probs=(0.1, 0.2, 0.7))
    m = CDOSGenModel(params=PARAMS, gemnet=cfg, diffusion=diffusion, num_atoms=dist)
    back = CDOSGenModel.load(m.save(tmp_path))
    assert back.gemnet == cfg and back.diffusion == diffusion and back.num_atoms == dist
    assert back.gemnet.scale_factors == cfg.scale_factors  # tuples of (str, float), not lists


def test_model_rejects_bad_parts():
    cfg = GemNetConfig.tiny()
    dist = NumAtomsDistribution(probs=(1.0,))
    with pytest.raises(ValueError, match="gemnet"):
        CDOSGenModel(params=PARAMS, gemnet=dataclasses.asdict(cfg), num_atoms=dist)
    with pytest.raises(ValueError, match="params"):
        CDOSGenModel(params=PARAMS["params"], gemnet=cfg, num_atoms=dist)
    with pytest.raises(ValueError, match="num_atoms"):
        CDOSGenModel(params=PARAMS, gemnet=cfg, num_atoms=(1.0,))


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


def test_load_default():
    m = load_default()
    assert isinstance(m, CDOSGenModel)
    assert m.gemnet.dos_dim == 256 and m.num_atoms.max_atoms <= 20
    # The embedded model was fine-tuned with the default forward processes.
    assert m.diffusion == DiffusionConfig()
    leaves = [np.asarray(x) for x in jax.tree.leaves(m.params)]
    assert all(np.all(np.isfinite(x)) for x in leaves) and sum(x.size for x in leaves) > 10_000
