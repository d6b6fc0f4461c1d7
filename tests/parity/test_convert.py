"""Converter: model folder -> cdosgen model directory round trip, and every rejection case."""

import numpy as np
import pytest
import yaml
from parity_helpers import require_mattergen

require_mattergen()
import jax  # noqa: E402
import torch  # noqa: E402
from mg_reference import TINY, build_denoiser, config_dict  # noqa: E402

from experiments.convert_mattergen import main as cli_main  # noqa: E402
from jaxdos.crystal.checkpoint import CDOSGenModel  # noqa: E402
from jaxdos.crystal.convert import (  # noqa: E402
    ConversionError,
    convert_model_dir,
    translate_config,
)
from jaxdos.crystal.convert.reading import MODEL_PREFIX  # noqa: E402
from jaxdos.crystal.diffusion.num_atoms import ALEX_MP_20  # noqa: E402
from jaxdos.pipeline.models import load  # noqa: E402

ADAPT = ("dft_band_gap",)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(config dict, model-relative state_dict) of a tiny GemNetTAdapter, built once."""
    import json

    import mattergen.common.gemnet.gemnet as mg_gemnet
    from parity_helpers import GEMNET_DT_SCALES

    root = tmp_path_factory.mktemp("scales")
    (root / "common" / "gemnet").mkdir(parents=True)
    (root / "common" / "gemnet" / "gemnet-dT.json").write_text(json.dumps(GEMNET_DT_SCALES))
    old, mg_gemnet.MODELS_PROJECT_ROOT = mg_gemnet.MODELS_PROJECT_ROOT, str(root)
    try:
        model = build_denoiser(TINY, 3, ADAPT)
    finally:
        mg_gemnet.MODELS_PROJECT_ROOT = old
    return config_dict(TINY, ADAPT), dict(model.state_dict())


def _write(folder, config, state_dict, lightning=True):
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    if lightning:
        ckpt = {
            "state_dict": {MODEL_PREFIX + k: v for k, v in state_dict.items()},
            "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}}],
            "epoch": 7,
            "global_step": 70,
            "pytorch-lightning_version": "2.0.6",
        }
        torch.save(ckpt, folder / "checkpoints" / "last.ckpt")
    else:
        torch.save(state_dict, folder / "state_dict.pt")
    return folder


def test_model_dir_round_trip_and_cli(reference, tmp_path, capsys):
    config, sd = reference
    src = _write(tmp_path / "model", config, sd)
    model, report = convert_model_dir(src, tmp_path / "out")
    params, gemnet, diffusion = model.params, model.gemnet, model.diffusion
    assert report.dropped["optimizer_states"].startswith("Adam")
    assert any("energy head" in r for r in report.dropped.values())
    assert gemnet.properties[0].mean == pytest.approx(1.5)
    assert gemnet.properties[0].std == pytest.approx(0.7)
    assert len(gemnet.scale_factors) == 3 * TINY["num_blocks"] + TINY["num_blocks"] + 1
    assert diffusion.pos.sigma_max == 5.0
    # The converted model loads as the same typed object as a jaxdos-trained CDOSGen.
    restored = load(tmp_path / "out")
    assert isinstance(restored, CDOSGenModel) and restored.num_atoms == ALEX_MP_20
    assert restored.gemnet == gemnet and restored.diffusion == diffusion
    assert restored.meta["source"] == "mattergen"
    assert restored.meta["conversion"]["num_tensors"] == report.num_tensors
    flat = jax.tree.leaves(
        jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), params, restored.params)
    )
    assert all(flat)
    kernel = np.asarray(params["params"]["fc_atom"]["kernel"])
    np.testing.assert_array_equal(kernel, sd["fc_atom.weight"].numpy().T)
    # The CLI on a bare state_dict folder.
    bare = _write(tmp_path / "bare", config, sd, lightning=False)
    assert cli_main([str(bare), str(tmp_path / "out2")]) == 0
    assert "parameters" in capsys.readouterr().out


def _reject(tmp_path, config, sd, match):
    src = _write(tmp_path / "bad", config, sd)
    with pytest.raises(ConversionError, match=match):
        convert_model_dir(src)


def test_rejects_missing_tensor(reference, tmp_path):
    config, sd = reference
    sd = {k: v for k, v in sd.items() if k != "gemnet.int_blocks.1.dense_ca.linear.weight"}
    _reject(tmp_path, config, sd, r"missing tensor for param 'gemnet/int_blocks_1/dense_ca")


def test_rejects_extra_tensor(reference, tmp_path):
    config, sd = reference
    sd = {**sd, "gemnet.int_blocks.9.dense_ca.linear.weight": torch.zeros(32, 32)}
    _reject(tmp_path, config, sd, r"unused tensor 'gemnet.int_blocks.9.dense_ca.linear.weight'")
    sd2 = {**reference[1], "gemnet.mystery_buffer": torch.zeros(3)}
    _reject(tmp_path, config, sd2, r"unknown tensor 'gemnet.mystery_buffer'")


def test_rejects_wrong_shape(reference, tmp_path):
    config, sd = reference
    sd = {**sd, "fc_atom.weight": torch.zeros(100, 32)}
    _reject(tmp_path, config, sd, r"tensor 'fc_atom.weight' has shape \(32, 100\)")


def test_rejects_wrong_buffer(reference, tmp_path):
    config, sd = reference
    sd = {**sd, "gemnet.radial_basis.rbf.offset": sd["gemnet.radial_basis.rbf.offset"] * 2}
    _reject(tmp_path, config, sd, r"buffer 'gemnet.radial_basis.rbf.offset'")


@pytest.mark.parametrize(
    "path,value,match",
    [
        (("gemnet", "use_pbc_single"), True, r"unknown field.*gemnet\.use_pbc_single"),
        (("gemnet", "activation"), "relu", r"gemnet\.activation='relu'"),
        (("mystery",), 1, r"unknown field.*model\.mystery"),
    ],
)
def test_rejects_unknown_config_field(reference, path, value, match):
    config, _ = reference
    import copy

    config = copy.deepcopy(config)
    node = config["lightning_module"]["diffusion_module"]["model"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConversionError, match=match):
        translate_config(config)
    with pytest.raises(ConversionError, match=r"unknown field.*<root>\.wandb"):
        translate_config({**reference[0], "wandb": {}})


def test_rejects_truncated_file(reference, tmp_path):
    config, sd = reference
    src = _write(tmp_path / "trunc", config, sd)
    ckpt = src / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(ConversionError, match=r"last.ckpt: not a readable torch checkpoint"):
        convert_model_dir(src)
