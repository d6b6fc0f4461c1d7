"""Converter without torch: name map, config translation and strictness on synthetic state_dicts.

The synthetic state_dict is built from the JAX param template with MatterGen's naming (the inverse
of the name map, written out here independently), plus the tensors MatterGen has and the port does
not (energy head, buffers, scale factors, scaler statistics).
"""

import copy
import re
import subprocess
import sys

import numpy as np
import pytest

from jaxdos.crystal.convert import (
    ConversionError,
    convert_state_dict,
    dotted_to_flax,
    param_template,
    translate_config,
)
from jaxdos.crystal.gemnet import GemNetConfig, ScalarProperty, noise_level_encoding  # noqa: F401
from jaxdos.crystal.gemnet.basis import noise_level_div_term

SMALL = dict(
    num_blocks=2,
    emb_size_atom=16,
    emb_size_edge=16,
    emb_size_trip=4,
    emb_size_rbf=4,
    emb_size_cbf=4,
    emb_size_bil_trip=4,
    num_radial=8,
    latent_dim=16,
    num_atom=2,
)


def _torch_key(path: str) -> tuple[str, bool]:
    """flax path -> (MatterGen state_dict key, transposed?)."""
    m = re.fullmatch(r"gemnet/cond_(adapt|mixin)_layers_(\w+?)_(\d+)(?:_(\d))?/(kernel|bias)", path)
    if m:
        kind, prop, i, j, leaf = m.groups()
        mid = f"{i}.{j}" if j else i
        return (
            f"gemnet.cond_{kind}_layers.{prop}.{mid}.{'weight' if leaf == 'kernel' else 'bias'}",
            leaf == "kernel",
        )
    *mods, leaf = path.split("/")
    mods = [re.sub(r"_(\d+)$", r".\1", x) for x in mods]
    name = ".".join(mods)
    if leaf == "kernel":
        return f"{name}.weight", True
    if leaf == "embedding":
        return f"{name}.weight", False
    return f"{name}.{leaf}", False


def synthetic_state_dict(config: GemNetConfig, rng) -> dict:
    sd = {}
    for path, shape in param_template(config).items():
        key, transposed = _torch_key(path)
        arr = rng.normal(size=shape.shape).astype(np.float32)
        sd[key] = arr.T.copy() if transposed else arr
    d = config.emb_size_edge
    for j in range(config.num_blocks + 1):
        sd[f"gemnet.out_blocks.{j}.dense_rbf.linear.weight"] = np.zeros(
            (d, config.emb_size_rbf), np.float32
        )
        sd[f"gemnet.out_blocks.{j}.out_energy.linear.weight"] = np.zeros((1, d), np.float32)
        sd[f"gemnet.out_blocks.{j}.scale_sum.scale_factor"] = np.ones((), np.float32)
        sd[f"gemnet.out_blocks.{j}.scale_rbf_F.scale_factor"] = np.float32(2.0 + j)
        for reg in ("layers", "seq_energy"):
            sd[f"gemnet.out_blocks.{j}.{reg}.0.linear.weight"] = np.zeros((d, d), np.float32)
    for i in range(config.num_blocks):
        for s in (
            "trip_interaction.scale_rbf",
            "trip_interaction.scale_cbf_sum",
            "atom_update.scale_sum",
        ):
            sd[f"gemnet.int_blocks.{i}.{s}.scale_factor"] = np.float32(1.5)
    offsets = np.linspace(0, 1, config.num_radial, dtype=np.float32)
    sd["gemnet.radial_basis.rbf.offset"] = offsets
    sd["gemnet.cbf_basis3.radial_basis.rbf.offset"] = offsets
    sd["noise_level_encoding.div_term"] = noise_level_div_term(config.latent_dim).astype(np.float32)
    for p in config.properties:
        pre = f"property_embeddings_adapt.{p.name}"
        sd[f"{pre}.conditional_embedding_module.div_term"] = noise_level_div_term(
            config.emb_size_atom
        ).astype(np.float32)
        sd[f"{pre}.scaler.means"] = np.array([2.5], np.float32)
        sd[f"{pre}.scaler.stds"] = np.array([0.5], np.float32)
    return sd


def _base_config(adapt=()):
    gem = {
        "_target_": "mattergen.common.gemnet."
        + ("gemnet_ctrl.GemNetTCtrl" if adapt else "gemnet.GemNetT"),
        "atom_embedding": {"_target_": "x.AtomEmbedding", "emb_size": 512, "with_mask_type": True},
        "cutoff": 7.0,
        "emb_size_atom": 512,
        "emb_size_edge": 512,
        "latent_dim": 512,
        "max_cell_images_per_dim": 5,
        "max_neighbors": 50,
        "num_blocks": 4,
        "num_targets": 1,
        "otf_graph": True,
        "regress_stress": True,
        "scale_file": "/scratch/amlt_code/x.json",
    }
    if adapt:
        gem["condition_on_adapt"] = list(adapt)
    enc = "mattergen.diffusion.model_utils.NoiseLevelEncoding"
    prop = {
        "_target_": "mattergen.property_embeddings.PropertyEmbedding",
        "conditional_embedding_module": {"_target_": enc, "d_model": 512},
        "name": "p",
        "scaler": {"_target_": "mattergen.common.utils.data_utils.StandardScalerTorch"},
        "unconditional_embedding_module": {"_target_": "e.EmbeddingVector", "hidden_dim": 512},
    }
    model = {
        "_target_": "mattergen.adapter.GemNetTAdapter"
        if adapt
        else "mattergen.denoiser.GemNetTDenoiser",
        "atom_type_diffusion": "mask",
        "denoise_atom_types": True,
        "gemnet": gem,
        "hidden_dim": 512,
        "property_embeddings": {},
        "property_embeddings_adapt": {a: prop for a in adapt},
    }
    corruption = {
        "_target_": "m.MultiCorruption",
        "discrete_corruptions": {
            "atomic_numbers": {
                "_target_": "d",
                "offset": 1,
                "d3pm": {
                    "_target_": "MaskDiffusion",
                    "dim": 101,
                    "schedule": {"_target_": "s", "kind": "standard", "num_steps": 1000},
                },
            }
        },
        "sdes": {
            "cell": {
                "_target_": "c",
                "vpsde_config": {
                    "beta_max": 20,
                    "beta_min": 0.1,
                    "limit_density": 0.05771451654022283,
                    "limit_var_scaling_constant": 0.25,
                },
            },
            "pos": {
                "_target_": "p",
                "limit_info_key": "num_atoms",
                "sigma_max": 5.0,
                "wrapping_boundary": 1.0,
            },
        },
    }
    return {
        "auto_resume": True,
        "data_module": {},
        "trainer": {},
        "lightning_module": {
            "_target_": "L",
            "optimizer_partial": {},
            "scheduler_partials": [],
            "diffusion_module": {
                "_target_": "D",
                "loss_fn": {},
                "pre_corruption_fn": {},
                "model": model,
                "corruption": corruption,
            },
        },
    }


def test_dotted_to_flax():
    assert dotted_to_flax("int_blocks.0.layers_before_skip.0.dense_mlp.1.linear") == (
        "int_blocks_0/layers_before_skip_0/dense_mlp_1/linear"
    )


def test_released_config_translates_to_mattergen_base_sizes():
    tr = translate_config(_base_config(("dft_band_gap",)))
    ref = GemNetConfig.mattergen_base()
    for f in (
        "num_blocks",
        "emb_size_atom",
        "emb_size_edge",
        "emb_size_trip",
        "emb_size_rbf",
        "emb_size_cbf",
        "emb_size_bil_trip",
        "num_spherical",
        "num_radial",
        "latent_dim",
    ):
        assert getattr(tr.gemnet, f) == getattr(ref, f), f
    assert tr.gemnet.graph.cutoff == 7.0 and tr.gemnet.graph.max_neighbors == 50
    assert tr.gemnet.properties == (ScalarProperty(name="dft_band_gap"),)
    assert tr.diffusion.cell.limit_density == pytest.approx(0.05771451654022283)
    assert "trainer" in tr.ignored and any("scale_file" in k for k in tr.ignored)


def test_config_rejections():
    bad = copy.deepcopy(_base_config())
    bad["lightning_module"]["diffusion_module"]["model"]["gemnet"]["num_concat"] = 2
    with pytest.raises(ConversionError, match="num_concat=2"):
        translate_config(bad)
    bad = copy.deepcopy(_base_config())
    bad["lightning_module"]["diffusion_module"]["corruption"]["sdes"]["pos"]["sigma_maxx"] = 1
    with pytest.raises(ConversionError, match=r"unknown field.*sdes\.pos\.sigma_maxx"):
        translate_config(bad)


def test_synthetic_state_dict_converts_and_is_strict(rng):
    config = GemNetConfig(**SMALL, properties=(ScalarProperty(name="dft_band_gap"),))
    sd = synthetic_state_dict(config, rng)
    params, full, report = convert_state_dict(sd, config)
    assert full.properties[0].mean == 2.5 and full.properties[0].std == 0.5
    assert dict(full.scale_factors)["out_blocks_2/scale_rbf_F"] == 4.0
    assert report.num_tensors == len(param_template(config))
    k = params["params"]["gemnet"]["int_blocks_1"]["dense_ca"]["linear"]["kernel"]
    np.testing.assert_array_equal(k, sd["gemnet.int_blocks.1.dense_ca.linear.weight"].T)
    # 5 energy-head tensors (dense_rbf, out_energy, scale_sum, layers.0, seq_energy.0) per block
    assert sum("energy head" in r for r in report.dropped.values()) == 5 * (config.num_blocks + 1)

    def rejected(mutate, match):
        bad = dict(sd)
        mutate(bad)
        with pytest.raises(ConversionError, match=match):
            convert_state_dict(bad, config)

    rejected(lambda d: d.pop("fc_atom.bias"), r"missing tensor for param 'fc_atom/bias'")
    rejected(
        lambda d: d.update({"gemnet.extra.weight": np.zeros((2, 2), np.float32)}),
        r"unused tensor 'gemnet.extra.weight'",
    )
    rejected(
        lambda d: d.update({"fc_atom.weight": np.zeros((3, 3), np.float32)}),
        r"'fc_atom.weight' has shape \(3, 3\)",
    )
    rejected(
        lambda d: d.update({"gemnet.int_blocks.7.atom_update.scale_sum.scale_factor": 1.0}),
        r"no ScalingFactor 'int_blocks_7/atom_update/scale_sum'",
    )
    rejected(lambda d: d.update({"something_else": np.zeros(1, np.float32)}), "unknown tensor")


def test_library_never_imports_torch():
    code = (
        "import sys, jaxdos.crystal.convert, jaxdos.crystal.denoiser, jaxdos.sampler;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
